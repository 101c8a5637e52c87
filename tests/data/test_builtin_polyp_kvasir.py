"""PolypDB_INS (COCO instances + semantic lists) and Kvasir-SEG (semantic + instances) registrations."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from skinformer.config import get_cfg
from skinformer.data.catalog import DatasetCatalog, MetadataCatalog
from skinformer.data.datasets import kvasir
from skinformer.data.mappers import build_dataset_mapper
from skinformer.data.mask_io import DataFileError

H, W = 40, 48


def _img(path, seed=0, h=H, w=W):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)


def _jpeg_mask(path, fg):
    """A binary mask saved as a 3-channel JPEG: compression leaves grey levels around the edges."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.stack([fg.astype(np.uint8) * 255] * 3, -1)).save(path, quality=75)


def _two_polyps_and_a_speck():
    fg = np.zeros((H, W), bool)
    fg[4:16, 4:18] = True  # 168 px
    fg[24:36, 28:44] = True  # 192 px
    fg[2:6, 40:44] = True  # 16 px < 50: not an instance
    return fg


# ---------------------------------------------------------------------------------------------
# PolypDB_INS
# ---------------------------------------------------------------------------------------------
def _polypdb(root):
    base = os.path.join(root, "polypdb_ins")
    for k in range(3):
        _img(os.path.join(base, "images", f"p{k}.jpg"), seed=k)
        _jpeg_mask(os.path.join(base, "masks", f"p{k}.jpg"), _two_polyps_and_a_speck())
    poly = [6.0, 6.0, 20.0, 6.0, 20.0, 18.0, 6.0, 18.0]
    coco = {
        "images": [{"id": k + 1, "file_name": f"images/p{k}.jpg", "height": H, "width": W} for k in range(2)],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "segmentation": [poly], "bbox": [6, 6, 14, 12], "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 2, "segmentation": [[30.0, 24.0, 44.0, 24.0, 44.0, 36.0]],
             "bbox": [30, 24, 14, 12], "iscrowd": 0},
            {"id": 3, "image_id": 2, "category_id": 2, "segmentation": [poly], "iscrowd": 1},
        ],
        "categories": [{"id": 1, "name": "pedunculated"}, {"id": 2, "name": "sessile"}],
    }
    for split in ("train", "val", "test"):
        with open(os.path.join(base, f"polypdb_ins_{split}.json"), "w") as f:
            json.dump(coco, f)
        with open(os.path.join(base, f"polypdb_sem_{split}.json"), "w") as f:
            json.dump({"images": [{"id": k, "file_name": f"images/p{k}.jpg", "mask_name": f"masks/p{k}.jpg"}
                                  for k in range(3)]}, f)
    return base


def test_polypdb_instances_found_loaded_and_mapped(tmp_path, use_root):
    _polypdb(tmp_path)
    use_root("polypdb", tmp_path)
    dicts = DatasetCatalog.get("polypdb_ins_train")
    assert len(dicts) == 2
    assert [a["category_id"] for a in dicts[0]["annotations"]] == [0, 1]  # ids 1, 2 -> 0, 1
    meta = MetadataCatalog.get("polypdb_ins_train")
    assert meta.classes == ["pedunculated", "sessile"] and meta.thing_dataset_id_to_contiguous_id == {1: 0, 2: 1}
    assert meta.evaluator_type == "coco_instance" and meta.mapper == "InstanceMapper"
    assert meta.json_file.endswith("polypdb_ins_train.json")

    cfg = get_cfg()
    cfg.DATASETS.TRAIN = ("polypdb_ins_train",)
    cfg.INPUT.IMAGE_SIZE = 64
    cfg.INPUT.MIN_SCALE, cfg.INPUT.MAX_SCALE = 1.0, 1.0
    cfg.INPUT.RANDOM_FLIP = "none"
    mapper = build_dataset_mapper(cfg, is_train=True)
    out = mapper(dict(dicts[0], _aug_seed=0))
    inst = out["instances"]
    assert out["image"].shape == (3, 64, 64)
    assert inst.gt_classes.tolist() == [0, 1] and inst.gt_masks.shape == (2, 64, 64)
    assert (inst.gt_boxes.tensor[:, 2:] > inst.gt_boxes.tensor[:, :2]).all()
    crowd_only = mapper(dict(dicts[1], _aug_seed=0))
    assert len(crowd_only["instances"]) == 0  # the crowd annotation is dropped


def test_polypdb_semantic_jpeg_masks_threshold_128(tmp_path, use_root):
    _polypdb(tmp_path)
    use_root("polypdb", tmp_path)
    dicts = DatasetCatalog.get("polypdb_ins_sem_seg_val")
    assert len(dicts) == 3
    meta = MetadataCatalog.get("polypdb_ins_sem_seg_val")
    assert meta.classes == ["polyp"] and meta.evaluator_type == "isic_task1" and meta.mask_encoding == "binary"
    cfg = get_cfg()
    cfg.DATASETS.TRAIN = ("polypdb_ins_sem_seg_val",)
    cfg.INPUT.MIN_SIZE_TRAIN = (H,)
    cfg.INPUT.CROP.ENABLED = False
    cfg.INPUT.RANDOM_FLIP = "none"
    out = build_dataset_mapper(cfg, is_train=True)(dict(dicts[0], _aug_seed=0))
    sem = out["sem_seg"].numpy()
    fg = _two_polyps_and_a_speck()
    assert set(np.unique(sem).tolist()) == {0, 1}
    # JPEG ringing stays on the right side of 128 away from the edges
    assert (sem[6:14, 6:16] == 0).all() and (sem[20:22, 0:20] == 1).all()
    assert abs(int((sem == 0).sum()) - int(fg.sum())) < 30


# ---------------------------------------------------------------------------------------------
# Kvasir-SEG
# ---------------------------------------------------------------------------------------------
def _kvasir(root, nested=False):
    base = os.path.join(root, "kvasir_seg")
    data = os.path.join(base, "Kvasir-SEG") if nested else base
    names = ["ck1", "ck2", "ck3", "ck4"]
    for k, n in enumerate(names):
        _img(os.path.join(data, "images", f"{n}.jpg"), seed=k)
        fg = _two_polyps_and_a_speck() if k != 3 else np.zeros((H, W), bool)
        _jpeg_mask(os.path.join(data, "masks", f"{n}.jpg"), fg)
    os.makedirs(os.path.join(base, "splits"))
    for split, members in {"train": ["ck1", "ck2"], "val": ["ck3"], "test": ["ck4"]}.items():
        with open(os.path.join(base, "splits", f"{split}.txt"), "w") as f:
            f.write("".join(f"{m}.jpg\n" for m in members))
    return base


def test_kvasir_semantic_split_files(tmp_path, use_root):
    _kvasir(tmp_path)
    use_root("kvasir", tmp_path)
    assert [d["image_id"] for d in DatasetCatalog.get("kvasir_seg_train")] == ["ck1", "ck2"]
    assert [d["image_id"] for d in DatasetCatalog.get("kvasir_seg_test")] == ["ck4"]
    meta = MetadataCatalog.get("kvasir_seg_train")
    assert meta.classes == ["polyp"] and meta.mapper == "SemanticMapper"


def test_kvasir_official_zip_folder_is_accepted(tmp_path, use_root):
    _kvasir(tmp_path, nested=True)
    use_root("kvasir", tmp_path)
    d = DatasetCatalog.get("kvasir_seg_val")[0]
    assert "/kvasir_seg/Kvasir-SEG/images/ck3.jpg" in d["file_name"]


def test_kvasir_instances_derived_from_masks(tmp_path, use_root):
    _kvasir(tmp_path)
    use_root("kvasir", tmp_path)
    dicts = DatasetCatalog.get("kvasir_ins_train")
    assert [len(d["annotations"]) for d in dicts] == [2, 2]  # the 16 px speck is below 50 px
    ann = dicts[0]["annotations"][0]
    assert ann["category_id"] == 0 and isinstance(ann["segmentation"], dict)
    assert DatasetCatalog.get("kvasir_ins_test")[0]["annotations"] == []  # empty mask: valid, no instance
    meta = MetadataCatalog.get("kvasir_ins_train")
    assert meta.classes == ["polyp"] and meta.evaluator_type == "coco_instance" and meta.mapper == "InstanceMapper"

    cfg = get_cfg()
    cfg.DATASETS.TRAIN = ("kvasir_ins_train",)
    cfg.INPUT.IMAGE_SIZE = 48
    cfg.INPUT.MIN_SCALE, cfg.INPUT.MAX_SCALE = 1.0, 1.0
    cfg.INPUT.RANDOM_FLIP = "none"
    out = build_dataset_mapper(cfg, is_train=True)(dict(dicts[0], _aug_seed=0))
    inst = out["instances"]
    assert len(inst) == 2
    # the two components, recovered exactly up to JPEG edge noise
    boxes = sorted(inst.gt_boxes.tensor.round().tolist())
    assert np.allclose(boxes, [[4, 4, 18, 16], [28, 24, 44, 36]], atol=1)


def test_kvasir_instances_from_json_follow_the_split(tmp_path, use_root):
    base = _kvasir(tmp_path)
    os.makedirs(os.path.join(base, "annotations"))
    coco = {
        "images": [{"id": k + 1, "file_name": f"ck{k + 1}.jpg", "height": H, "width": W} for k in range(4)],
        "annotations": [{"id": k + 1, "image_id": k + 1, "category_id": 1,
                         "segmentation": [[2.0, 2.0, 12.0, 2.0, 12.0, 12.0]], "iscrowd": 0} for k in range(4)],
        "categories": [{"id": 1, "name": "polyp"}],
    }
    with open(os.path.join(base, "annotations", "instances_derived_from_masks.json"), "w") as f:
        json.dump(coco, f)
    use_root("kvasir", tmp_path)
    dicts = DatasetCatalog.get("kvasir_ins_train")
    assert [os.path.basename(d["file_name"]) for d in dicts] == ["ck1.jpg", "ck2.jpg"]
    assert all(len(d["annotations"]) == 1 and isinstance(d["annotations"][0]["segmentation"], list) for d in dicts)

    coco["annotations"][0]["category_id"] = 3
    with open(os.path.join(base, "annotations", "instances_derived_from_masks.json"), "w") as f:
        json.dump(coco, f)
    with pytest.raises(DataFileError, match="unknown category_id 3"):
        kvasir.load_kvasir_ins(str(tmp_path), "train")


def test_kvasir_bad_split_entry_names_it(tmp_path):
    base = _kvasir(tmp_path)
    with open(os.path.join(base, "splits", "val.txt"), "a") as f:
        f.write("missing_one.jpg\n")
    with pytest.raises(DataFileError, match="missing_one"):
        kvasir.load_kvasir_seg(str(tmp_path), "val")
    os.remove(os.path.join(base, "masks", "ck4.jpg"))
    with pytest.raises(DataFileError, match="ck4.jpg"):
        kvasir.load_kvasir_seg(str(tmp_path), "test")


def test_prepare_kvasir_from_official_zip(tmp_path, monkeypatch, capsys):
    import shutil

    from skinformer.data.preparation import kvasir as prep

    staging = tmp_path / "staging" / "Kvasir-SEG"
    for k in range(10):
        _img(str(staging / "images" / f"c{k}.jpg"), seed=k)
        _jpeg_mask(str(staging / "masks" / f"c{k}.jpg"), _two_polyps_and_a_speck())
    zip_path = shutil.make_archive(str(tmp_path / "kvasir-seg"), "zip", root_dir=tmp_path / "staging",
                                   base_dir="Kvasir-SEG")
    monkeypatch.setenv("SKINFORMER_DATASETS", str(tmp_path / "elsewhere"))
    root = tmp_path / "root"
    assert prep.main(["--download", zip_path, "--root", str(root), "--write-instances", "--check", "-1"]) == 0
    out = capsys.readouterr().out
    assert "kvasir_ins_test" in out and "ERROR" not in out
    sizes = {s: len(kvasir.load_kvasir_seg(str(root), s)) for s in ("train", "val", "test")}
    assert sizes == {"train": 7, "val": 1, "test": 2}
    ins = kvasir.load_kvasir_ins(str(root), "train")  # from the written json
    assert all(len(d["annotations"]) == 2 for d in ins) and isinstance(ins[0]["image_id"], int)
