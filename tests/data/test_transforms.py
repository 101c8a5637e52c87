import cv2
import numpy as np
import pytest

from skinformer.config import get_cfg
from skinformer.data import transforms as T


def _sample(h=48, w=64, seed=0):
    """Label map with 3 labels + an image whose channel 0 encodes the labels exactly."""
    rng = np.random.default_rng(seed)
    seg = np.zeros((h, w), dtype=np.int64)
    seg[10:30, 12:40] = 1
    seg[25:45, 30:60] = 2
    img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    img[:, :, 0] = (seg * 100).astype(np.uint8)
    return img, seg


def _check_aligned(img, seg, ignore=255, img_fill=0):
    """Channel 0 of the image must equal 100 * label wherever the label is not a fill."""
    valid = seg != ignore
    assert (img[:, :, 0][valid] == (seg[valid] * 100)).all()
    assert (img[:, :, 0][~valid] == img_fill).all()


NEAREST = cv2.INTER_NEAREST_EXACT  # the same sampling rule the label maps use


@pytest.mark.parametrize("aug", [
    T.RandomFlip(1.0),
    T.RandomFlip(1.0, horizontal=False, vertical=True),
    T.RandomCrop("absolute", (20, 30)),
    T.RandomCrop("relative_range", (0.3, 0.3)),
    T.ResizeShortestEdge((20, 100), 200, "range", interp=NEAREST),
    T.ResizeScale(0.5, 2.0, 64, 64, interp=NEAREST),
    T.RandomRotation((-180, 180), expand=True, interp=cv2.INTER_NEAREST),
    T.RandomRotation((90, 90), expand=False, interp=cv2.INTER_NEAREST),
    T.RandomShear(0.3, interp=cv2.INTER_NEAREST),
    T.ElasticTransform(alpha=300, sigma=6, interp=cv2.INTER_NEAREST),
    T.RandomCropCategoryAreaConstraint("absolute", (24, 24), 0.6, ignored_category=255),
])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_geometric_augmentations_align_image_and_mask(aug, seed):
    img, seg = _sample()
    out, tfms = T.apply_augmentations(aug, img, sem_seg=seg, masks=np.stack([seg == 1, seg == 2]), rng=seed)
    assert out.image.shape[:2] == out.sem_seg.shape == out.masks.shape[1:]
    assert out.sem_seg.dtype == np.int64 and out.masks.dtype == bool
    _check_aligned(out.image, out.sem_seg)
    # binary masks follow the same geometry; filled pixels are False
    assert (out.masks[0] == (out.sem_seg == 1)).all()
    assert (out.masks[1] == (out.sem_seg == 2)).all()


def test_fixed_size_crop_pads_image_128_and_mask_ignore():
    img, seg = _sample(30, 40)
    out, _ = T.apply_augmentations(T.FixedSizeCrop((50, 32)), img, sem_seg=seg, rng=0)
    assert out.image.shape == (50, 32, 3)
    assert (out.sem_seg[30:] == 255).all() and (out.image[30:] == 128).all()
    _check_aligned(out.image[:30], out.sem_seg[:30])


def test_pad_to_divisible():
    img, seg = _sample(30, 40)
    out, _ = T.apply_augmentations(T.PadToDivisible(32, seg_pad_value=255), img, sem_seg=seg, rng=0)
    assert out.image.shape == (32, 64, 3)
    assert (out.sem_seg[30:] == 255).all() and (out.sem_seg[:, 40:] == 255).all()
    assert (out.image[30:] == 0).all()


def test_rotation_90_expand_swaps_size_and_rotates_exactly():
    img, seg = _sample(20, 30)
    aug = T.RandomRotation((90, 90), expand=True, interp=cv2.INTER_NEAREST)
    out, _ = T.apply_augmentations(aug, img, sem_seg=seg, rng=0)
    assert out.image.shape == (30, 20, 3)
    assert (out.sem_seg == np.rot90(seg)).all()  # counter-clockwise
    assert (out.image == np.rot90(img)).all()


def test_boxes_follow_flip_and_crop():
    img, seg = _sample(40, 60)
    boxes = np.array([[10.0, 5.0, 20.0, 15.0]])
    out, _ = T.apply_augmentations(T.RandomFlip(1.0), img, boxes=boxes, rng=0)
    assert np.allclose(out.boxes, [[40.0, 5.0, 50.0, 15.0]])
    out, tfm = T.apply_augmentations(T.RandomCrop("absolute", (30, 30)), img, boxes=boxes, rng=0)
    x0, y0 = tfm.transforms[0].x0, tfm.transforms[0].y0
    assert np.allclose(out.boxes, [[10 - x0, 5 - y0, 20 - x0, 15 - y0]])


def test_same_seed_same_result_different_seeds_differ():
    img, seg = _sample(100, 120)
    augs = [T.RandomCrop("absolute", (40, 40)), T.RandomFlip(0.5), T.ColorAugSSD()]
    a, _ = T.apply_augmentations(augs, img, sem_seg=seg, rng=np.random.default_rng(7))
    b, _ = T.apply_augmentations(augs, img, sem_seg=seg, rng=np.random.default_rng(7))
    assert (a.image == b.image).all() and (a.sem_seg == b.sem_seg).all()
    crops = set()
    for s in range(10):
        _, tfms = T.apply_augmentations(augs, img, sem_seg=seg, rng=s)
        crops.add((tfms.transforms[0].x0, tfms.transforms[0].y0))
    assert len(crops) > 5


def test_augmentations_do_not_touch_global_rng():
    img, seg = _sample()
    np.random.seed(0)
    state = np.random.get_state()[1].copy()
    T.apply_augmentations([T.RandomCrop("absolute", (20, 20)), T.ColorAugSSD(), T.ElasticTransform()], img,
                          sem_seg=seg, rng=3)
    assert (np.random.get_state()[1] == state).all()


def test_rng_is_required():
    img, _ = _sample()
    with pytest.raises(TypeError, match="np.random.Generator"):
        T.apply_augmentations(T.RandomFlip(), img, rng=None)


def test_color_aug_ssd_changes_image_only():
    img, seg = _sample()
    masks = np.stack([seg == 1])
    changed = 0
    for s in range(8):
        out, tfms = T.apply_augmentations(T.ColorAugSSD(), img.copy(), sem_seg=seg.copy(), masks=masks, rng=s)
        assert (out.sem_seg == seg).all() and (out.masks == masks).all()
        assert out.image.dtype == np.uint8 and out.image.shape == img.shape
        changed += int(not (out.image == img).all())
    assert changed >= 5


def test_color_aug_ssd_parameter_ranges():
    # brightness within ±32; ops drawn in one of the two orders; hue an integer within ±18
    seen_orders = set()
    for s in range(200):
        t = T.ColorAugSSD().get_transform(np.zeros((4, 4, 3), np.uint8), rng=np.random.default_rng(s))
        assert t.brightness_delta is None or -32 <= t.brightness_delta <= 32
        names = [n for n, _ in t.ops]
        for n, v in t.ops:
            if n == "hue":
                assert -18 <= v <= 18 and v == int(v)
            else:
                assert 0.5 <= v <= 1.5
        if len(names) == 3:
            seen_orders.add(tuple(names))
    assert seen_orders == {("contrast", "saturation", "hue"), ("saturation", "hue", "contrast")}


def test_elastic_uses_same_field_for_image_and_mask_with_linear_image():
    img, seg = _sample()
    img[:, :, 1] = img[:, :, 0]  # a second channel that equals the labels too
    out, tfms = T.apply_augmentations(T.ElasticTransform(alpha=200, sigma=5), img, sem_seg=seg, rng=1)
    # bilinear image vs nearest mask: they agree away from label borders
    interior = cv2.erode((out.sem_seg == 1).astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    assert interior.sum() > 20
    assert (np.abs(out.image[:, :, 0][interior].astype(int) - 100) <= 1).all()
    assert not (out.sem_seg == seg).all()  # it did deform


def test_rotation_prob_is_decided_per_sample():
    img, _ = _sample()
    aug = T.RandomRotation((10, 20), prob=0.5)
    kinds = {type(aug.get_transform(img, rng=np.random.default_rng(s))).__name__ for s in range(30)}
    assert kinds == {"NoOpTransform", "RotationTransform"}


def test_resize_shortest_edge_sizes():
    img, _ = _sample(100, 200)
    out, _ = T.apply_augmentations(T.ResizeShortestEdge((50,), 1000, "choice"), img, rng=0)
    assert out.image.shape[:2] == (50, 100)
    out, _ = T.apply_augmentations(T.ResizeShortestEdge((80,), 120, "choice"), img, rng=0)
    assert out.image.shape[:2] == (60, 120)  # capped by max_size


def test_category_area_constraint_rejects_single_category_crops():
    seg = np.zeros((100, 100), np.int64)
    seg[:, 90:] = 1
    img = np.zeros((100, 100, 3), np.uint8)
    aug = T.RandomCropCategoryAreaConstraint("absolute", (20, 20), single_category_max_area=0.9)
    ok = 0
    for s in range(20):
        t = aug.get_transform(img, seg, rng=np.random.default_rng(s))
        crop = seg[t.y0:t.y0 + 20, t.x0:t.x0 + 20]
        ok += int(len(np.unique(crop)) > 1)
    assert ok >= 10  # a plain random crop would almost never include both categories (p ~ 0.3)


def test_build_augmentation_from_config():
    cfg = get_cfg()
    cfg.INPUT.RANDOM_FLIP = "both"
    cfg.INPUT.ROTATION.PROB = 0.5
    cfg.INPUT.COLOR_AUG_SSD = True
    cfg.INPUT.ELASTIC.PROB = 0.3
    cfg.INPUT.SHEAR.PROB = 0.3
    cfg.INPUT.CROP.SINGLE_CATEGORY_MAX_AREA = 0.8
    names = [type(a).__name__ for a in T.build_augmentation(cfg, is_train=True)]
    assert names == ["RandomRotation", "ResizeShortestEdge", "RandomCropCategoryAreaConstraint", "RandomShear",
                     "ElasticTransform", "ColorAugSSD", "RandomFlip", "RandomFlip"]
    assert [type(a).__name__ for a in T.build_augmentation(cfg, is_train=False)] == ["ResizeShortestEdge"]
    cfg.INPUT.RANDOM_FLIP = "diagonal"
    with pytest.raises(ValueError, match="RANDOM_FLIP.*diagonal"):
        T.build_augmentation(cfg, is_train=True)


def test_lsj_augmentation_output_size():
    cfg = get_cfg()
    cfg.INPUT.IMAGE_SIZE = 64
    img, seg = _sample(50, 80)
    for s in range(5):
        out, _ = T.apply_augmentations(T.build_lsj_augmentation(cfg, True), img, sem_seg=seg, rng=s)
        assert out.image.shape == (64, 64, 3) and out.sem_seg.shape == (64, 64)
