import numpy as np
import pytest
from PIL import Image

from skinformer.data.catalog import Metadata
from skinformer.data.mask_io import DataFileError, decode_binary, read_image, read_sem_seg


def _meta(**kw):
    base = dict(name="t", classes=["lesion"], ignore_label=255, has_background_class=False, mask_encoding="binary")
    base.update(kw)
    return Metadata(**base)


def _save(path, arr, **kw):
    Image.fromarray(arr).save(path, **kw)
    return str(path)


def test_binary_0_255_and_0_1_decode_identically(tmp_path):
    fg = np.zeros((8, 9), dtype=bool)
    fg[2:5, 3:7] = True
    a = _save(tmp_path / "a.png", fg.astype(np.uint8) * 255)
    b = _save(tmp_path / "b.png", fg.astype(np.uint8))
    la, lb = read_sem_seg(a, _meta()), read_sem_seg(b, _meta())
    assert (la == lb).all()
    assert (la[fg] == 0).all() and (la[~fg] == 1).all()  # lesion = class 0, background = K


def test_jpeg_binary_mask_threshold_128(tmp_path):
    fg = np.zeros((32, 32), dtype=np.uint8)
    fg[8:24, 8:24] = 255
    p = _save(tmp_path / "m.jpg", np.stack([fg] * 3, -1), quality=70)
    lab = read_sem_seg(p, _meta())
    assert (lab[10:22, 10:22] == 0).all() and (lab[:4, :4] == 1).all()


def test_index_mask_out_of_range_and_equal_num_classes(tmp_path):
    meta = _meta(classes=["bg", "a", "b"], has_background_class=True, mask_encoding="index")
    ok = _save(tmp_path / "ok.png", np.array([[0, 1], [2, 255]], dtype=np.uint8))
    assert read_sem_seg(ok, meta).tolist() == [[0, 1], [2, 255]]
    bad = _save(tmp_path / "bad.png", np.array([[0, 3], [2, 1]], dtype=np.uint8))
    with pytest.raises(DataFileError) as e:
        read_sem_seg(bad, meta)
    assert "bad.png" in str(e.value) and "[3]" in str(e.value) and "NUM_CLASSES" in str(e.value)


def test_rgb_mask_where_index_expected(tmp_path):
    meta = _meta(classes=["bg", "a"], has_background_class=True, mask_encoding="index")
    rgb = np.zeros((4, 4, 3), dtype=np.uint8)
    rgb[..., 0] = 1
    p = _save(tmp_path / "rgb.png", rgb)
    with pytest.raises(DataFileError, match="rgb.png.*RGB mask"):
        read_sem_seg(p, meta)


def test_gray_values_unknown_value_names_file_and_value(tmp_path):
    meta = _meta(classes=[str(i) for i in range(3)], has_background_class=True, mask_encoding="gray_values",
                 gray_values={0: 0, 147: 1, 111: 2})
    good = _save(tmp_path / "g.png", np.array([[0, 147], [111, 0]], dtype=np.uint8))
    assert read_sem_seg(good, meta).tolist() == [[0, 1], [2, 0]]
    bad = _save(tmp_path / "v.png", np.array([[0, 146]], dtype=np.uint8))
    with pytest.raises(DataFileError, match=r"v.png.*\[146\]"):
        read_sem_seg(bad, meta)


def test_mat_index_maps(tmp_path):
    from scipy.io import savemat

    arr = np.array([[0, 6], [3, 1]])
    savemat(tmp_path / "x.mat", {"smgt": arr})
    meta = _meta(classes=[str(i) for i in range(7)], has_background_class=True, mask_encoding="mat")
    assert read_sem_seg(str(tmp_path / "x.mat"), meta).tolist() == arr.tolist()


def test_truncated_and_missing_images(tmp_path):
    p = tmp_path / "img.jpg"
    Image.fromarray(np.random.randint(0, 255, (64, 64, 3), dtype=np.uint8)).save(p)
    data = p.read_bytes()
    (tmp_path / "trunc.jpg").write_bytes(data[: len(data) // 2])
    assert read_image(str(p)).shape == (64, 64, 3)
    with pytest.raises(DataFileError, match="trunc.jpg"):
        read_image(str(tmp_path / "trunc.jpg"))
    with pytest.raises(DataFileError, match="missing.jpg"):
        read_image(str(tmp_path / "missing.jpg"))


def test_empty_mask_is_valid():
    assert decode_binary(np.zeros((3, 3), np.uint8)).sum() == 0


# --- every bit depth is read, scaled to 8 bit, never clipped (one reader for training, validator, prediction)
def test_16bit_grey_png_is_scaled_not_clipped(tmp_path):
    ramp = np.linspace(0, 65535, 64, dtype=np.uint16).reshape(8, 8)
    p = str(tmp_path / "img16.png")
    Image.fromarray(ramp).save(p)
    img = read_image(p)
    assert img.dtype == np.uint8 and img.shape == (8, 8, 3)
    expected = np.rint(ramp / 257.0).astype(np.uint8)
    assert (img[:, :, 0] == expected).all()
    assert len(np.unique(img)) > 32  # a clipped read is almost all 255 (a white square)


def test_16bit_rgb_png_is_scaled(tmp_path):
    cv2 = pytest.importorskip("cv2")
    rgb16 = np.zeros((4, 5, 3), np.uint16)
    rgb16[..., 0] = 65535
    rgb16[..., 1] = 32896  # 128 * 257
    p = str(tmp_path / "rgb16.png")
    cv2.imwrite(p, rgb16[:, :, ::-1])  # OpenCV writes BGR
    img = read_image(p)
    assert (img[..., 0] == 255).all() and (abs(img[..., 1].astype(int) - 128) <= 1).all() and (img[..., 2] == 0).all()


def test_float_and_32bit_images(tmp_path):
    unit = np.linspace(0, 1, 16, dtype=np.float32).reshape(4, 4)
    p = str(tmp_path / "f.tiff")
    Image.fromarray(unit, mode="F").save(p)
    assert (read_image(p)[:, :, 0] == np.rint(unit * 255).astype(np.uint8)).all()
    big = str(tmp_path / "big.tiff")
    Image.fromarray(unit * 1000, mode="F").save(big)
    with pytest.raises(DataFileError, match=r"big\.tiff.*float image.*\[0, 1\] or \[0, 255\]"):
        read_image(big)
    i32 = str(tmp_path / "i32.tiff")
    Image.fromarray((unit * 65535).astype(np.int32), mode="I").save(i32)
    assert (read_image(i32)[:, :, 0] == np.rint(unit * 255).astype(np.uint8)).all()


def test_validator_sees_bit_depth_and_colour_masks_as_training_does(tmp_path):
    from skinformer.data.validation import validate_dataset_dicts

    bad = str(tmp_path / "hdr.tiff")
    Image.fromarray(np.full((6, 6), 4000.0, np.float32), mode="F").save(bad)
    red = np.zeros((6, 6, 3), np.uint8)
    red[2:4, 2:4, 0] = 255
    m = _save(tmp_path / "red.png", red)
    report = validate_dataset_dicts([{"file_name": bad, "sem_seg_file_name": m, "height": 6, "width": 6}],
                                    _meta(), progress=False)
    assert [f for f, _ in report.errors["unreadable_image"]] == [bad]  # not a silent white square
    assert not report.notes.get("empty_mask")  # the red lesion is foreground


# --- colour binary masks: any colour is foreground (one decoder for training, validator, evaluate.py)
def test_pure_red_binary_mask_is_foreground(tmp_path):
    rgb = np.zeros((6, 6, 3), np.uint8)
    rgb[1:4, 1:4, 0] = 255  # pure red lesion: channel mean 85, luma 76
    p = _save(tmp_path / "red.png", rgb)
    lab = read_sem_seg(p, _meta())
    assert (lab[1:4, 1:4] == 0).all() and lab.sum() == 36 - 9  # lesion = class 0, rest background (1)
    assert decode_binary(rgb).sum() == 9


def test_label_map_as_binary_mask_is_an_error(tmp_path):
    p = _save(tmp_path / "labels.png", np.array([[0, 1], [2, 2]], np.uint8))
    with pytest.raises(DataFileError, match=r"labels\.png.*\[0, 1, 2\]"):
        read_sem_seg(p, _meta())
    soft = _save(tmp_path / "soft.png", np.array([[0, 60], [200, 255]], np.uint8))
    assert (read_sem_seg(soft, _meta()) == np.array([[1, 1], [0, 0]])).all()
