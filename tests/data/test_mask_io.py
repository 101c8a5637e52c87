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
