"""skin_{acne,hemo,mela}_{train,val,test}: the layout written by tools/create_skin_dataset.py."""
import os

import cv2
import numpy as np
import pytest

from skinformer.config import get_cfg
from skinformer.data.catalog import DatasetCatalog, MetadataCatalog
from skinformer.data.datasets import skin
from skinformer.data.datasets.utils import DatasetNotFoundError
from skinformer.data.mappers import build_dataset_mapper
from skinformer.data.mask_io import DataFileError
from skinformer.data import skin_dataset, skin_masks

H, W = 24, 32


def _make_skin_root(tmp_path, n=10, skin_type="mela"):
    """Raw capture pairs -> generate_skin_masks -> create_skin_dataset, as a user would."""
    raw = tmp_path / "raw"
    raw.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        org = rng.integers(60, 180, (H, W, 3), dtype=np.uint8)
        marked = org.copy()
        if i % 3:  # every third capture has no finding: an empty mask is data
            marked[4:10, 5 + i:12 + i] = (0, 200, 255)
        cv2.imwrite(str(raw / f"{i:03d}_org_{skin_type}.png"), org)
        cv2.imwrite(str(raw / f"{i:03d}_{100 + i}_{skin_type}.png"), marked)
    report = skin_masks.generate_masks(str(raw), skin_type, progress=False)
    assert len(report.written) == n
    root = tmp_path / "root"
    splits = skin_dataset.create_skin_dataset(str(raw), skin_type, str(root), 0.2, 0.2, seed=0,
                                                              progress=False)
    return root, splits


def test_skin_dataset_found_loaded_and_mapped(tmp_path, use_root):
    root, splits = _make_skin_root(tmp_path)
    use_root("skin", root)
    train = DatasetCatalog.get("skin_mela_train")
    assert [d["image_id"] for d in train] == splits["train"]
    assert len(DatasetCatalog.get("skin_mela_val")) == len(splits["val"]) == 2
    assert len(DatasetCatalog.get("skin_mela_test")) == 2
    meta = MetadataCatalog.get("skin_mela_train")
    assert meta.classes == ["mela"] and meta.has_background_class is False
    assert meta.evaluator_type == "isic_task1" and meta.mask_encoding == "binary"
    assert MetadataCatalog.get("skin_acne_val").classes == ["acne"]
    with pytest.raises(DatasetNotFoundError, match="skin/acne/val"):
        DatasetCatalog.get("skin_acne_val")  # only mela was created

    cfg = get_cfg()
    cfg.DATASETS.TRAIN = ("skin_mela_train",)
    cfg.INPUT.MIN_SIZE_TRAIN = (H,)
    cfg.INPUT.CROP.ENABLED = False
    cfg.INPUT.RANDOM_FLIP = "none"
    mapper = build_dataset_mapper(cfg, is_train=True)
    for d in train:
        out = mapper(dict(d, _aug_seed=0))
        i = int(d["image_id"])
        expected = np.ones((H, W), np.int64)
        if i % 3:
            expected[4:10, 5 + i:12 + i] = 0  # 0/1 mask: 1 = mela = class 0; background = 1
        assert (out["sem_seg"].numpy() == expected).all(), d["image_id"]


def test_skin_unpaired_files_are_named(tmp_path):
    root, splits = _make_skin_root(tmp_path)
    masks = root / "skin" / "mela" / "train" / "masks"
    victim = f"{splits['train'][0]}_mask_mela.png"
    os.remove(masks / victim)
    with pytest.raises(DataFileError, match=f"{splits['train'][0]}_org_mela.png"):
        skin.load_skin(str(root), "mela", "train")
    cv2.imwrite(str(masks / victim), np.zeros((H, W), np.uint8))
    cv2.imwrite(str(masks / "zzz_mask_mela.png"), np.zeros((H, W), np.uint8))
    with pytest.raises(DataFileError, match="zzz_mask_mela.png"):
        skin.load_skin(str(root), "mela", "train")
