"""Augmentations of the original per-pixel projects: rotation by a list of angles, shrink-and-paste, grid / barrel /
pincushion distortion, sharpening, colour jitter, random low-res crop — image and masks stay
aligned, reproducible from the sample seed, reachable from INPUT.* in both mappers; and the dump tool."""
import os
import subprocess
import sys

import numpy as np
import pytest

from skinformer.config import get_cfg
from skinformer.data.catalog import Metadata
from skinformer.data.mappers import MultiLabelMapper
from skinformer.data.transforms import (
    RandomColorJitter, RandomGridDistortion, RandomLowResCrop, RandomOpticalDistortion, RandomSharpen,
    RandomShrinkPaste, ShrinkPasteTransform, apply_augmentations, build_augmentation,
)

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def _sample(h=64, w=64):
    mask = np.zeros((h, w), np.int64)
    mask[16:40, 20:44] = 1
    img = np.full((h, w, 3), 60, np.uint8)
    img[..., 0] = np.where(mask == 1, 250, 10)
    img[..., 1] = np.arange(w, dtype=np.uint8)[None, :] * 3  # texture for the photometric ops
    return img, mask


def _aligned(aug_input):
    fg = aug_input.image[..., 0] > 130
    lab = aug_input.sem_seg
    known = lab != 255
    return float((fg[known] == (lab[known] == 1)).mean())


def test_shrink_paste_known_answer():
    img = np.arange(100, dtype=np.uint8).reshape(10, 10)[..., None].repeat(3, 2)
    seg = np.zeros((10, 10), np.int64)
    seg[:, :] = 1
    seg[0, 0] = 0  # anchor pixel (10 px from the bottom-right of a 10x10 image)
    t = ShrinkPasteTransform(10, 10, 0.5)
    out = t.apply_image(img)
    assert (out[:2, :, 0] == img[0, 0, 0]).all() and (out[:, :2, 0] == img[0, 0, 0]).all()
    assert out.shape == img.shape and (out[2:7, 2:7, 0] != img[0, 0, 0]).any()
    s = t.apply_segmentation(seg)
    assert (s[0] == 0).all() and (s[2:7, 2:7][1:, 1:] == 1).all()  # canvas = the anchor's label
    coords = t.apply_coords(np.array([[0.0, 0.0], [10.0, 10.0]]))
    assert coords.tolist() == [[2.0, 2.0], [7.0, 7.0]]


def test_rotation_by_angle_list_from_config():
    cfg = get_cfg()
    cfg.INPUT.ROTATION.PROB = 1.0
    cfg.INPUT.ROTATION.ANGLES = [90]
    cfg.INPUT.CROP.ENABLED = False
    cfg.INPUT.RANDOM_FLIP = "none"
    cfg.INPUT.MIN_SIZE_TRAIN = (64,)
    img, mask = _sample()
    aug, _ = apply_augmentations(build_augmentation(cfg, True), img, sem_seg=mask, rng=0)
    assert (aug.sem_seg == np.rot90(mask)).all()  # counter-clockwise quarter turn, exact
    cfg.INPUT.ROTATION.ANGLES = [0, 90, 180, 270]
    seen = set()
    for s in range(20):
        a, _ = apply_augmentations(build_augmentation(cfg, True), img, sem_seg=mask, rng=s)
        seen.add(next(k for k in range(4) if (a.sem_seg == np.rot90(mask, k)).all()))
    assert seen == {0, 1, 2, 3}


@pytest.mark.parametrize("aug", [RandomGridDistortion(5, 0.4, seg_fill=255),
                                 RandomOpticalDistortion("barrel", (0.3, 0.5)),
                                 RandomOpticalDistortion("pincushion", (0.3, 0.5)),
                                 RandomShrinkPaste((0.7,)), RandomLowResCrop((0.5, 0.5), (24, 24))])
def test_geometric_ops_keep_image_and_mask_aligned_and_reproducible(aug):
    img, mask = _sample()
    a, _ = apply_augmentations([aug], img, sem_seg=mask, rng=3)
    b, _ = apply_augmentations([aug], img, sem_seg=mask, rng=3)
    assert (a.image == b.image).all() and (a.sem_seg == b.sem_seg).all()
    assert a.image.shape[:2] == a.sem_seg.shape
    assert not np.array_equal(a.sem_seg, mask) or a.sem_seg.shape != mask.shape
    assert _aligned(a) > 0.97
    assert set(np.unique(a.sem_seg)) <= {0, 1, 255}  # nearest for labels, ignore where filled


def test_barrel_pulls_in_pincushion_pushes_out():
    img, mask = _sample()
    area = lambda kind: int(apply_augmentations([RandomOpticalDistortion(kind, (0.4, 0.4))], img, sem_seg=mask,  # noqa
                                                rng=0)[0].sem_seg.__eq__(1).sum())
    assert area("barrel") < (mask == 1).sum() < area("pincushion")


def test_photometric_ops_change_image_only():
    img, mask = _sample()
    for aug in (RandomSharpen((0.5, 0.5)), RandomColorJitter(0.3, 0.3, 0.3, 0.05)):
        a, _ = apply_augmentations([aug], img, sem_seg=mask, rng=1)
        assert (a.sem_seg == mask).all() and not np.array_equal(a.image, img)
    a, _ = apply_augmentations([RandomColorJitter(brightness=0.5)], img, rng=2)
    ratio = a.image[..., 0].astype(float).mean() / img[..., 0].astype(float).mean()
    assert 0.5 <= ratio <= 1.5 and not np.isclose(ratio, 1.0)  # only brightness: a global gain
    with pytest.raises(ValueError, match="HUE"):
        RandomColorJitter(hue=0.7)


def test_low_res_crop_size_and_padding():
    img, mask = _sample()
    a, _ = apply_augmentations([RandomLowResCrop((0.25, 0.25), (24, 24), seg_fill=255)], img, sem_seg=mask, rng=0)
    assert a.image.shape == (24, 24, 3) and a.sem_seg.shape == (24, 24)
    assert (a.sem_seg[16:, :] == 255).all()  # 64 * 0.25 = 16 rows, the rest is padding (ignored)


def _multilabel_dataset(tmp_path):
    from PIL import Image

    masks = np.zeros((2, 48, 48), bool)
    # central, so that the shrink canvas anchor (10 px from the bottom-right corner) is background
    # under every rotation: a canvas colour taken from a blended boundary pixel would be ambiguous
    masks[0, 12:28, 12:28] = True
    masks[1, 20:34, 20:34] = True
    img = np.full((48, 48, 3), 40, np.uint8)
    img[..., 0][masks[0]] = 250
    img[..., 1][masks[1]] = 250
    Image.fromarray(img).save(tmp_path / "im.png")
    files = []
    for k in range(2):
        files.append(str(tmp_path / f"m{k}.png"))
        Image.fromarray(masks[k].astype(np.uint8) * 255).save(files[-1])
    return {"file_name": str(tmp_path / "im.png"), "height": 48, "width": 48, "label_file_names": files}


def test_every_extra_augmentation_through_the_multilabel_mapper(tmp_path):
    cfg = get_cfg()
    inp = cfg.INPUT
    inp.MIN_SIZE_TRAIN, inp.CROP.ENABLED = (48,), False
    inp.ROTATION.PROB, inp.ROTATION.ANGLES = 1.0, [0, 90, 180, 270]
    for node in (inp.SHRINK, inp.GRID_DISTORTION, inp.BARREL_DISTORTION, inp.SHARPEN):
        node.PROB = 1.0
    inp.COLOR_JITTER.PROB, inp.COLOR_JITTER.BRIGHTNESS, inp.COLOR_JITTER.HUE = 1.0, 0.05, 0.05
    names = [type(a).__name__ for a in build_augmentation(cfg, True)]
    for n in ("RandomRotation", "RandomShrinkPaste", "RandomGridDistortion", "RandomOpticalDistortion",
              "RandomSharpen", "RandomColorJitter"):
        assert n in names
    meta = Metadata(name="ml", classes=["a", "b"], ignore_label=255, has_background_class=False)
    mapper = MultiLabelMapper(True, augmentations=build_augmentation(cfg, True), metadata=meta)
    d = _multilabel_dataset(tmp_path)
    out = mapper(dict(d, _aug_seed=5))
    lm, image = out["label_masks"].numpy(), out["image"].numpy()
    assert lm.dtype == bool and lm.shape[1:] == image.shape[1:]
    assert (lm[0] & lm[1]).any()  # still overlapping
    assert ((image[0] > 150) == lm[0]).mean() > 0.95 and ((image[1] > 150) == lm[1]).mean() > 0.95


def test_dump_augmentations_tool(tmp_path):
    out = tmp_path / "dump"
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "dump_augmentations.py"), "--config-file",
                        os.path.join(ROOT, "configs", "quickstart", "per_pixel_r18_synthetic.yaml"), "--num", "3",
                        "--output", str(out), "INPUT.GRID_DISTORTION.PROB", "1.0", "INPUT.SHRINK.PROB", "1.0"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, SKINFORMER_CACHE=str(tmp_path / "cache")))
    assert r.returncode == 0, r.stderr[-2000:]
    files = sorted(os.listdir(out))
    assert files == ["0000_image.png", "0000_mask.png", "0001_image.png", "0001_mask.png", "0002_image.png",
                     "0002_mask.png"]
