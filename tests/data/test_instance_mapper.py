"""InstanceMapper: polygons/RLE rasterised, crowd and empty instances dropped, boxes from masks, LSJ."""
import logging

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_util

from skinformer.config import get_cfg
from skinformer.data.catalog import Metadata
from skinformer.data.mappers import InstanceMapper
from skinformer.data.mask_io import DataFileError
from skinformer.data.transforms import (
    Augmentation,
    CropTransform,
    FixedSizeCrop,
    RandomFlip,
    RandomRotation,
    ResizeScale,
    build_lsj_augmentation,
)
from skinformer.structures import masks_to_boxes

H, W = 40, 50
META = Metadata(name="ins", classes=["pedunculated", "sessile"], ignore_label=255)


def _rle(mask):
    r = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": list(r["size"]), "counts": r["counts"].decode("ascii")}


def _sample(tmp_path):
    img = np.full((H, W, 3), 90, np.uint8)
    Image.fromarray(img).save(tmp_path / "p.png")
    rle_mask = np.zeros((H, W), bool)
    rle_mask[20:35, 30:46] = True
    anns = [
        {"id": 1, "category_id": 0, "iscrowd": 0, "segmentation": [[4.0, 4.0, 16.0, 4.0, 16.0, 14.0, 4.0, 14.0]]},
        {"id": 2, "category_id": 1, "iscrowd": 0, "segmentation": _rle(rle_mask)},
        {"id": 3, "category_id": 1, "iscrowd": 1, "segmentation": _rle(rle_mask)},  # crowd: dropped
        {"id": 4, "category_id": 0, "iscrowd": 0, "segmentation": [[1.0, 1.0, 2.0, 2.0]]},  # empty: dropped
    ]
    return {"file_name": str(tmp_path / "p.png"), "height": H, "width": W, "image_id": 1, "annotations": anns}, rle_mask


def test_rasterise_drop_crowd_and_empty(tmp_path, caplog):
    d, rle_mask = _sample(tmp_path)
    with caplog.at_level(logging.WARNING):
        out = InstanceMapper(True, augmentations=[], metadata=META)(dict(d, _aug_seed=0))
    assert "dropped 1 annotations with empty polygons" in caplog.text
    inst = out["instances"]
    assert inst.image_size == (H, W) and inst.gt_classes.tolist() == [0, 1]
    assert inst.gt_masks.dtype == torch.bool and inst.gt_masks.shape == (2, H, W)
    assert (inst.gt_masks[1].numpy() == rle_mask).all()
    assert inst.gt_masks[0, 5:13, 5:15].all() and inst.gt_masks[0].sum() < 12 * 12 + 30
    assert inst.gt_boxes.tensor[1].tolist() == [30, 20, 46, 35]
    assert "annotations" not in out and out["image"].shape == (3, H, W)


class _CropRightHalf(Augmentation):
    def get_transform(self, image, *, rng):
        h, w = image.shape[:2]
        return CropTransform(w // 2, 0, w - w // 2, h, orig_w=w, orig_h=h)


def test_instances_cropped_away_are_removed_and_boxes_follow_masks(tmp_path):
    d, rle_mask = _sample(tmp_path)
    out = InstanceMapper(True, augmentations=[_CropRightHalf()], metadata=META)(dict(d, _aug_seed=0))
    inst = out["instances"]
    assert inst.gt_classes.tolist() == [1]  # the polygon at x 4..16 left the image
    assert inst.gt_boxes.tensor.tolist() == [[5, 20, 21, 35]]


def test_lsj_recipe_from_config_is_reproducible_per_sample(tmp_path):
    cfg = get_cfg()
    cfg.INPUT.ROTATION.PROB = 0.5
    cfg.INPUT.ROTATION.ANGLE = (-45.0, 45.0)
    cfg.INPUT.RANDOM_FLIP = "both"
    cfg.INPUT.IMAGE_SIZE = 64
    cfg.INPUT.MIN_SCALE, cfg.INPUT.MAX_SCALE = 0.1, 2.0
    augs = build_lsj_augmentation(cfg, True)
    assert [type(a) for a in augs] == [RandomRotation, RandomFlip, RandomFlip, ResizeScale, FixedSizeCrop]
    mapper = InstanceMapper(True, augmentations=augs, metadata=META)
    d, _ = _sample(tmp_path)
    images = set()
    for seed in range(10):
        a, b = mapper(dict(d, _aug_seed=seed)), mapper(dict(d, _aug_seed=seed))
        assert a["image"].shape == (3, 64, 64)  # padded to the fixed size
        assert torch.equal(a["image"], b["image"])
        assert torch.equal(a["instances"].gt_masks, b["instances"].gt_masks)
        inst = a["instances"]
        assert inst.gt_masks.flatten(1).any(1).all()  # no empty instance survives
        assert torch.equal(inst.gt_boxes.tensor, masks_to_boxes(inst.gt_masks).to(inst.gt_boxes.tensor.dtype))
        images.add(a["image"].numpy().tobytes())
        assert (a["height"], a["width"]) == (H, W)
    assert len(images) > 5  # each sample's seed draws its own jitter


def test_bad_inputs(tmp_path):
    d, _ = _sample(tmp_path)
    mapper = InstanceMapper(False, augmentations=[], metadata=META)
    bad = dict(d, annotations=[dict(d["annotations"][0], category_id=2)])
    with pytest.raises(DataFileError, match=r"p\.png: category ids \[2\]"):
        mapper(bad)
    with pytest.raises(DataFileError, match="p.png is 50x40"):
        mapper(dict(d, height=H + 1))
    rle = dict(d["annotations"][1])
    rle["segmentation"] = dict(rle["segmentation"], size=[H, W + 1])
    with pytest.raises(DataFileError, match="annotation 2: RLE size"):
        mapper(dict(d, annotations=[rle]))
    with pytest.raises(DataFileError, match="nope.png"):
        mapper(dict(d, file_name=str(tmp_path / "nope.png")))
    assert InstanceMapper(True, augmentations=[], metadata=META)(dict(d, file_name=str(tmp_path / "nope.png"))) is None
