"""The real ISIC 2017 (256²) and Kvasir-SEG copies in ../shared/data load, validate and map through
the built-in registrations. Skipped when the data is absent; only the first images are read."""
from pathlib import Path

import numpy as np
import pytest

from skinformer.config import get_cfg
from skinformer.data.catalog import DatasetCatalog, MetadataCatalog
from skinformer.data.datasets.kvasir import instances_from_mask
from skinformer.data.mappers import build_dataset_mapper
from skinformer.data.validation import validate_dataset_dicts

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
N = 20

pytestmark = pytest.mark.skipif(not (SHARED / "isic2017").is_dir() or not (SHARED / "kvasir_seg").is_dir(),
                                reason=f"real data not found in {SHARED}")


@pytest.fixture
def shared_root(use_root):
    use_root("isic", SHARED)
    use_root("kvasir", SHARED)


def test_isic2017_loads_validates_and_maps(shared_root):
    train, val = DatasetCatalog.get("isic2017_sem_seg_train"), DatasetCatalog.get("isic2017_sem_seg_val")
    assert (len(train), len(val)) == (2000, 150)
    assert not {d["image_id"] for d in train} & {d["image_id"] for d in val}
    assert all((d["height"], d["width"]) == (256, 256) for d in train[:N])
    report = validate_dataset_dicts(train[:N], MetadataCatalog.get("isic2017_sem_seg_train"), progress=False)
    assert report.ok, report.format()

    cfg = get_cfg()
    cfg.DATASETS.TRAIN = ("isic2017_sem_seg_train",)
    cfg.INPUT.COLOR_AUG_SSD = True
    cfg.INPUT.RANDOM_FLIP = "both"
    mapper = build_dataset_mapper(cfg, is_train=True)
    out = mapper(dict(train[0], _aug_seed=0))
    assert out["image"].shape == (3, 256, 256) and set(out["sem_seg"].unique().tolist()) <= {0, 1, 255}
    assert out["instances"].gt_classes.tolist() in ([0], [])


def test_kvasir_seg_loads_and_validates(shared_root):
    sizes = {s: len(DatasetCatalog.get(f"kvasir_seg_{s}")) for s in ("train", "val", "test")}
    assert sizes == {"train": 700, "val": 101, "test": 199}
    test = DatasetCatalog.get("kvasir_seg_test")
    report = validate_dataset_dicts(test[:N], MetadataCatalog.get("kvasir_seg_test"), progress=False)
    assert report.ok, report.format()


def test_kvasir_instances_match_masks(shared_root):
    dicts = DatasetCatalog.get("kvasir_ins_train")
    assert len(dicts) == 700
    seg = {d["file_name"]: d["sem_seg_file_name"] for d in DatasetCatalog.get("kvasir_seg_train")}
    for d in dicts[:N]:
        derived = instances_from_mask(seg[d["file_name"]])
        assert len(derived) == len(d["annotations"]), d["file_name"]
        # polygon boxes (contour points) are one pixel smaller than the exact RLE component boxes
        got, ref = sorted(a["bbox"] for a in derived), sorted(a["bbox"] for a in d["annotations"])
        assert np.allclose(got, ref, atol=1.5), (d["file_name"], got, ref)
    cfg = get_cfg()
    cfg.DATASETS.TRAIN = ("kvasir_ins_train",)
    cfg.INPUT.IMAGE_SIZE = 256
    out = build_dataset_mapper(cfg, is_train=True)(dict(dicts[0], _aug_seed=0))
    assert out["image"].shape == (3, 256, 256)
    assert out["instances"].gt_classes.tolist() == [0] * len(out["instances"])
