"""MultiLabelMapper: overlapping attribute masks travel with the image through the augmentations."""
import os

import numpy as np
import pytest
import torch
from PIL import Image

from skinformer.config import get_cfg
from skinformer.data.catalog import Metadata
from skinformer.data.mappers import MultiLabelMapper
from skinformer.data.mask_io import DataFileError
from skinformer.data.transforms import (
    ColorAugSSD,
    ElasticTransform,
    RandomCrop,
    RandomFlip,
    RandomRotation,
    RandomShear,
    ResizeShortestEdge,
    build_augmentation,
)
from skinformer.structures import masks_to_boxes

H, W = 24, 30
CLASSES = ["globules", "milia_like_cyst", "negative_network", "pigment_network", "streaks"]
META = Metadata(name="t2", classes=CLASSES, ignore_label=255, has_background_class=False)


def _sample(tmp_path, empty=(1, 2, 4)):
    """Image whose channel 0 is 255 exactly on mask 0 and channel 1 exactly on mask 3 (they overlap)."""
    masks = np.zeros((5, H, W), bool)
    masks[0, 3:15, 4:20] = True
    masks[3, 10:22, 12:28] = True
    for k in range(5):
        if k not in empty and k not in (0, 3):
            masks[k, 0:2, 0:3] = True
    img = np.zeros((H, W, 3), np.uint8)
    img[..., 0] = masks[0] * 255
    img[..., 1] = masks[3] * 255
    img[..., 2] = 77
    Image.fromarray(img).save(tmp_path / "im.png")
    files = []
    for k, c in enumerate(CLASSES):
        p = str(tmp_path / f"im_attribute_{c}.png")
        Image.fromarray(masks[k].astype(np.uint8) * 255).save(p)
        files.append(p)
    return {"file_name": str(tmp_path / "im.png"), "height": H, "width": W, "image_id": "im",
            "label_file_names": files}, masks


def test_no_augmentation_overlapping_masks_and_instances(tmp_path):
    d, masks = _sample(tmp_path)
    out = MultiLabelMapper(True, augmentations=[], metadata=META)(dict(d, _aug_seed=0))
    lm = out["label_masks"]
    assert lm.dtype == torch.bool and lm.shape == (5, H, W)
    assert (lm.numpy() == masks).all()
    assert (lm[0] & lm[3]).sum() > 0  # a pixel carries two classes
    inst = out["instances"]
    assert inst.gt_classes.tolist() == [0, 3]
    assert (inst.gt_masks.numpy() == masks[[0, 3]]).all()
    assert inst.gt_boxes.tensor.tolist() == [[4, 3, 20, 15], [12, 10, 28, 22]]
    assert out["image"].shape == (3, H, W) and out["image"].dtype == torch.uint8
    assert (out["height"], out["width"]) == (H, W) and "_aug_seed" not in out


def test_geometric_augmentation_keeps_image_and_masks_aligned(tmp_path):
    d, _ = _sample(tmp_path)
    mapper = MultiLabelMapper(True, augmentations=[RandomCrop("absolute", (16, 20)), RandomFlip(0.5),
                                                   RandomFlip(0.5, horizontal=False, vertical=True)],
                              metadata=META)
    seen = set()
    for seed in range(12):
        out = mapper(dict(d, _aug_seed=seed))
        img, lm = out["image"].numpy(), out["label_masks"].numpy()
        assert img.shape == (3, 16, 20)
        assert ((img[0] == 255) == lm[0]).all() and ((img[1] == 255) == lm[3]).all()
        seen.add(img.tobytes())
    assert len(seen) > 6  # the seed really changes the augmentation


def test_same_seed_same_sample_and_full_pipeline(tmp_path):
    d, _ = _sample(tmp_path, empty=(1,))
    augs = [RandomRotation((-30, 30), prob=1.0), ResizeShortestEdge((20, 28), 64, "choice"),
            RandomCrop("absolute", (18, 18)), RandomShear(0.2), ElasticTransform(30.0, 4.0),
            ColorAugSSD(), RandomFlip(0.5)]
    mapper = MultiLabelMapper(True, augmentations=augs, metadata=META, size_divisibility=32)
    a, b = mapper(dict(d, _aug_seed=5)), mapper(dict(d, _aug_seed=5))
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["label_masks"], b["label_masks"])
    assert a["image"].shape == (3, 32, 32) and a["label_masks"].shape == (5, 32, 32)
    assert not a["label_masks"][:, 18:, :].any() and not a["label_masks"][:, :, 18:].any()  # padding is False
    inst = a["instances"]
    present = [k for k in range(5) if a["label_masks"][k].any()]
    assert inst.gt_classes.tolist() == present
    assert torch.equal(inst.gt_boxes.tensor, masks_to_boxes(inst.gt_masks).to(inst.gt_boxes.tensor.dtype))


def test_from_config_uses_design_augmentations(tmp_path):
    cfg = get_cfg()
    cfg.INPUT.ROTATION.PROB = 0.5
    cfg.INPUT.COLOR_AUG_SSD = True
    cfg.INPUT.ELASTIC.PROB = 0.3
    cfg.INPUT.RANDOM_FLIP = "both"
    d, _ = _sample(tmp_path)
    mapper = MultiLabelMapper(True, augmentations=build_augmentation(cfg, True), metadata=META)
    names = [type(a).__name__ for a in mapper.augmentations.augs]
    assert names[:3] == ["RandomRotation", "ResizeShortestEdge", "RandomCrop"] and "ElasticTransform" in names
    out = mapper(dict(d, _aug_seed=1))
    assert out["label_masks"].shape[1:] == out["image"].shape[1:]


def test_bad_inputs_name_the_files(tmp_path):
    d, _ = _sample(tmp_path)
    mapper = MultiLabelMapper(False, augmentations=[], metadata=META)
    with pytest.raises(DataFileError, match="4 label files for 5 classes"):
        mapper(dict(d, label_file_names=d["label_file_names"][:4]))
    Image.fromarray(np.zeros((H + 2, W), np.uint8)).save(d["label_file_names"][2])
    with pytest.raises(DataFileError) as e:
        mapper(dict(d))
    assert os.path.basename(d["label_file_names"][2]) in str(e.value)
    with open(d["label_file_names"][2], "wb") as f:
        f.write(b"broken")
    with pytest.raises(DataFileError, match="negative_network"):
        mapper(dict(d))
    # in training an unreadable sample is skipped (the loader takes the next one)
    assert MultiLabelMapper(True, augmentations=[], metadata=META)(dict(d, _aug_seed=0)) is None


def test_missing_class_file_as_none_is_an_empty_mask(tmp_path):
    d, masks = _sample(tmp_path)
    files = list(d["label_file_names"])
    files[0] = None
    out = MultiLabelMapper(True, augmentations=[], metadata=META)(dict(d, label_file_names=files, _aug_seed=0))
    assert not out["label_masks"][0].any() and out["instances"].gt_classes.tolist() == [3]
