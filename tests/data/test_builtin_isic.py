"""ISIC 2016/2017/2018 Task 1, ISIC 2018 Task 2, ISIC 2017 Part 2 (.mat) and PH2 registrations on
tiny fixtures written in the official layouts."""
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from skinformer.config import get_cfg
from skinformer.data.catalog import DatasetCatalog, MetadataCatalog
from skinformer.data.datasets import isic, ph2
from skinformer.data.datasets.utils import DatasetNotFoundError
from skinformer.data.mappers import build_dataset_mapper
from skinformer.data.mask_io import DataFileError, read_sem_seg


def _img(path, h=20, w=24, seed=0, fmt=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    arr = np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
    Image.fromarray(arr).save(path, format=fmt)


def _mask(path, fg, scale=255):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray((fg.astype(np.uint8) * scale)).save(path)


def _fg(h=20, w=24, y=slice(4, 12), x=slice(5, 15)):
    m = np.zeros((h, w), dtype=bool)
    m[y, x] = True
    return m


def _write_task1(base, img_dir, gt_dir, ids, suffix, empty=()):
    for k, i in enumerate(ids):
        _img(os.path.join(base, img_dir, f"{i}.jpg"), seed=k)
        fg = np.zeros((20, 24), bool) if i in empty else _fg()
        _mask(os.path.join(base, gt_dir, f"{i}{suffix}"), fg)
    with open(os.path.join(base, img_dir, "LICENSE.txt"), "w") as f:
        f.write("not an image")


# ---------------------------------------------------------------------------------------------
# Task 1
# ---------------------------------------------------------------------------------------------
def _isic2018(root):
    base = os.path.join(root, "isic2018")
    _write_task1(base, "ISIC2018_Task1-2_Training_Input", "ISIC2018_Task1_Training_GroundTruth",
                 ["ISIC_0000001", "ISIC_0000000", "ISIC_0000002"], "_segmentation.png", empty={"ISIC_0000002"})
    _write_task1(base, "ISIC2018_Task1-2_Validation_Input", "ISIC2018_Task1_Validation_GroundTruth",
                 ["ISIC_0000010"], "_segmentation.png")
    _write_task1(base, "ISIC2018_Task1-2_Test_Input", "ISIC2018_Task1_Test_GroundTruth",
                 ["ISIC_0000020", "ISIC_0000021"], "_segmentation.png")
    return base


def test_isic2018_official_layout_found_loaded_and_mapped(tmp_path, use_root):
    base = _isic2018(tmp_path)
    use_root("isic", tmp_path)
    dicts = DatasetCatalog.get("isic_sem_seg_train")
    assert [d["image_id"] for d in dicts] == ["ISIC_0000000", "ISIC_0000001", "ISIC_0000002"]
    d = dicts[0]
    assert d["file_name"] == os.path.join(base, "ISIC2018_Task1-2_Training_Input", "ISIC_0000000.jpg")
    assert d["sem_seg_file_name"].endswith("ISIC2018_Task1_Training_GroundTruth/ISIC_0000000_segmentation.png")
    assert (d["height"], d["width"]) == (20, 24)
    assert len(DatasetCatalog.get("isic_sem_seg_val")) == 1
    assert len(DatasetCatalog.get("isic_sem_seg_test")) == 2
    meta = MetadataCatalog.get("isic_sem_seg_train")
    assert meta.classes == ["lesion"] and meta.ignore_label == 255 and meta.has_background_class is False
    assert meta.evaluator_type == "isic_task1" and meta.mapper == "SemanticMapper" and meta.mask_encoding == "binary"

    cfg = get_cfg()
    cfg.DATASETS.TRAIN = ("isic_sem_seg_train",)
    cfg.INPUT.MIN_SIZE_TRAIN = (20,)
    cfg.INPUT.CROP.SIZE = (16, 16)
    mapper = build_dataset_mapper(cfg, is_train=True)
    out = mapper(dict(d, _aug_seed=3))
    assert out["image"].shape == (3, 16, 16) and out["sem_seg"].shape == (16, 16)
    assert set(out["sem_seg"].unique().tolist()) <= {0, 1}
    # empty mask: a lesion-free image is data
    empty = mapper(dict(dicts[2], _aug_seed=0))
    assert (empty["sem_seg"] == 1).all() and len(empty["instances"]) == 0


def test_isic2018_json_split_list_is_accepted(tmp_path, use_root):
    base = _isic2018(tmp_path)
    entries = [{"id": 7, "file_name": "ISIC2018_Task1-2_Training_Input/ISIC_0000001.jpg",
                "mask_name": "ISIC2018_Task1_Training_GroundTruth/ISIC_0000001_segmentation.png"},
               {"id": 3, "file_name": "ISIC2018_Task1-2_Training_Input/ISIC_0000000.jpg",
                "mask_name": "ISIC2018_Task1_Training_GroundTruth/ISIC_0000000_segmentation.png"}]
    with open(os.path.join(base, "isic2018_sem_train.json"), "w") as f:
        json.dump({"images": entries}, f)
    use_root("isic", tmp_path)
    dicts = DatasetCatalog.get("isic_sem_seg_train")
    assert [d["image_id"] for d in dicts] == [3, 7]
    # each entry keeps its own pair (no sort-and-zip)
    assert all(os.path.basename(d["file_name"])[:-4] in d["sem_seg_file_name"] for d in dicts)

    entries.append({"id": 9, "file_name": "nope.jpg", "mask_name": "nope.png"})
    with open(os.path.join(base, "isic2018_sem_train.json"), "w") as f:
        json.dump({"images": entries}, f)
    with pytest.raises(DataFileError, match="nope.jpg"):
        isic.load_isic_task1(str(tmp_path), "2018", "train")


def test_isic2017_official_and_simple_layouts(tmp_path, use_root):
    base = os.path.join(tmp_path, "isic2017")
    _write_task1(base, "ISIC-2017_Training_Data", "ISIC-2017_Training_Part1_GroundTruth",
                 ["ISIC_0000000", "ISIC_0000001"], "_segmentation.png")
    # superpixel maps sit next to the training images and must be ignored
    _img(os.path.join(base, "ISIC-2017_Training_Data", "ISIC_0000000_superpixels.png"))
    _write_task1(base, "ISIC-2017_Validation_Data", "ISIC-2017_Validation_Part1_GroundTruth",
                 ["ISIC_0000100"], "_segmentation.png")
    _write_task1(base, "ISIC-2017_Test_v2_Data", "ISIC-2017_Test_v2_Part1_GroundTruth",
                 ["ISIC_0000200"], "_segmentation.png")
    use_root("isic", tmp_path)
    assert [d["image_id"] for d in DatasetCatalog.get("isic2017_sem_seg_train")] == ["ISIC_0000000", "ISIC_0000001"]
    assert [d["image_id"] for d in DatasetCatalog.get("isic2017_sem_seg_test")] == ["ISIC_0000200"]

    # the simple layout of the shared copy: images/, masks/, splits/{train,val}.txt
    simple = tmp_path / "simple"
    sb = os.path.join(simple, "isic2017")
    _write_task1(sb, "images", "masks", ["ISIC_0000005", "ISIC_0000006", "ISIC_0000007"], "_segmentation.png")
    os.makedirs(os.path.join(sb, "splits"))
    with open(os.path.join(sb, "splits", "train.txt"), "w") as f:
        f.write("ISIC_0000007\nISIC_0000005\n\n")
    with open(os.path.join(sb, "splits", "val.txt"), "w") as f:
        f.write("ISIC_0000006\n")
    use_root("isic", simple)
    assert [d["image_id"] for d in DatasetCatalog.get("isic2017_sem_seg_train")] == ["ISIC_0000007", "ISIC_0000005"]
    assert [d["image_id"] for d in DatasetCatalog.get("isic2017_sem_seg_val")] == ["ISIC_0000006"]
    with pytest.raises(DatasetNotFoundError, match="splits/test.txt"):
        DatasetCatalog.get("isic2017_sem_seg_test")


def test_isic2016_official_layout(tmp_path):
    base = os.path.join(tmp_path, "isic2016")
    _write_task1(base, "ISBI2016_ISIC_Part1_Training_Data", "ISBI2016_ISIC_Part1_Training_GroundTruth",
                 ["ISIC_0000000", "ISIC_0000001"], "_Segmentation.png")
    _write_task1(base, "ISBI2016_ISIC_Part1_Test_Data", "ISBI2016_ISIC_Part1_Test_GroundTruth",
                 ["ISIC_0000003"], "_Segmentation.png")
    train = isic.load_isic_task1(str(tmp_path), "2016", "train")
    assert len(train) == 2 and train[0]["sem_seg_file_name"].endswith("ISIC_0000000_Segmentation.png")
    assert len(isic.load_isic_task1(str(tmp_path), "2016", "test")) == 1
    assert "isic2016_sem_seg_val" not in isic.builtin_names()  # ISIC 2016 has no validation split


def test_task1_bad_input_names_the_file(tmp_path):
    root = str(tmp_path)
    base = _isic2018(tmp_path)
    img_dir = os.path.join(base, "ISIC2018_Task1-2_Training_Input")
    gt_dir = os.path.join(base, "ISIC2018_Task1_Training_GroundTruth")

    # unpaired image
    _img(os.path.join(img_dir, "ISIC_0000009.jpg"))
    with pytest.raises(DataFileError, match="ISIC_0000009.jpg"):
        isic.load_isic_task1(root, "2018", "train")
    os.remove(os.path.join(img_dir, "ISIC_0000009.jpg"))

    # mask without image
    _mask(os.path.join(gt_dir, "ISIC_0000008_segmentation.png"), _fg())
    with pytest.raises(DataFileError, match="ISIC_0000008_segmentation.png"):
        isic.load_isic_task1(root, "2018", "train")
    os.remove(os.path.join(gt_dir, "ISIC_0000008_segmentation.png"))

    # wrong size: both files named
    _mask(os.path.join(gt_dir, "ISIC_0000001_segmentation.png"), _fg(h=21))
    with pytest.raises(DataFileError) as e:
        isic.load_isic_task1(root, "2018", "train")
    assert "ISIC_0000001_segmentation.png" in str(e.value) and "ISIC_0000001.jpg" in str(e.value)
    _mask(os.path.join(gt_dir, "ISIC_0000001_segmentation.png"), _fg())

    # unreadable image
    with open(os.path.join(img_dir, "ISIC_0000001.jpg"), "wb") as f:
        f.write(b"garbage")
    with pytest.raises(DataFileError, match="ISIC_0000001.jpg"):
        isic.load_isic_task1(root, "2018", "train")


def test_missing_root_names_env_path_and_readme(tmp_path, use_root):
    use_root("isic", tmp_path / "nowhere")
    with pytest.raises(DatasetNotFoundError) as e:
        DatasetCatalog.get("isic_sem_seg_val")
    msg = str(e.value)
    assert "SKINFORMER_DATASETS" in msg and str(tmp_path / "nowhere" / "isic2018") in msg
    assert "datasets/README.md" in msg and "ISIC2018_Task1-2_Validation_Input" in msg


def test_registration_is_lazy_and_follows_env_at_resolution(tmp_path, use_root):
    _isic2018(tmp_path / "a")
    use_root("isic", tmp_path / "b")  # nothing there ...
    os.rename(tmp_path / "a", tmp_path / "b")  # ... until now: the root is read at lookup time, not at import
    assert len(DatasetCatalog.get("isic_sem_seg_test")) == 2
    assert MetadataCatalog.get("isic_sem_seg_test").root == os.path.join(tmp_path / "b", "isic2018")


# ---------------------------------------------------------------------------------------------
# ISIC 2018 Task 2
# ---------------------------------------------------------------------------------------------
def _task2(root, ids=("ISIC_0000000", "ISIC_0000001")):
    base = os.path.join(root, "isic2018")
    for k, i in enumerate(ids):
        _img(os.path.join(base, "ISIC2018_Task1-2_Training_Input", f"{i}.jpg"), seed=k)
        for j, a in enumerate(isic.ISIC2018_TASK2_ATTRIBUTES):
            fg = np.zeros((20, 24), bool)
            if j in (0, 3):  # globules and pigment network overlap on purpose
                fg[2 + j:12, 3:14] = True
            _mask(os.path.join(base, "ISIC2018_Task2_Training_GroundTruth_v3", f"{i}_attribute_{a}.png"), fg)
    _img(os.path.join(base, "ISIC2018_Task1-2_Validation_Input", "ISIC_0000050.jpg"))
    for a in isic.ISIC2018_TASK2_ATTRIBUTES:
        _mask(os.path.join(base, "ISIC2018_Task2_Validation_GroundTruth", f"ISIC_0000050_attribute_{a}.png"),
              np.zeros((20, 24), bool))
    _img(os.path.join(base, "ISIC2018_Task1-2_Test_Input", "ISIC_0000070.jpg"))
    for a in isic.ISIC2018_TASK2_ATTRIBUTES:
        _mask(os.path.join(base, "ISIC2018_Task2_Test_GroundTruth", f"ISIC_0000070_attribute_{a}.png"),
              np.zeros((20, 24), bool))
    return base


def test_isic2018_task2_dicts_and_metadata(tmp_path, use_root):
    base = _task2(tmp_path)
    use_root("isic", tmp_path)
    dicts = DatasetCatalog.get("isic2018_task2_train")
    assert len(dicts) == 2 and "sem_seg_file_name" not in dicts[0]
    meta = MetadataCatalog.get("isic2018_task2_train")
    assert meta.classes == ["globules", "milia_like_cyst", "negative_network", "pigment_network", "streaks"]
    assert meta.evaluator_type == "isic_task2" and meta.mapper == "MultiLabelMapper"
    files = dicts[0]["label_file_names"]
    assert [os.path.basename(f) for f in files] == [f"ISIC_0000000_attribute_{a}.png" for a in meta.classes]
    assert len(DatasetCatalog.get("isic2018_task2_val")) == 1
    test = DatasetCatalog.get("isic2018_task2_test")
    assert [d["image_id"] for d in test] == ["ISIC_0000070"]
    assert MetadataCatalog.get("isic2018_task2_test").evaluator_type == "isic_task2"

    cfg = get_cfg()
    cfg.DATASETS.TRAIN = ("isic2018_task2_train",)
    cfg.INPUT.MIN_SIZE_TRAIN = (20,)
    cfg.INPUT.CROP.ENABLED = False
    cfg.INPUT.RANDOM_FLIP = "none"
    out = build_dataset_mapper(cfg, is_train=True)(dict(dicts[0], _aug_seed=0))
    lm = out["label_masks"]
    assert lm.dtype == torch.bool and lm.shape == (5, 20, 24)
    assert (lm[0] & lm[3]).any()  # one pixel, two classes
    assert out["instances"].gt_classes.tolist() == [0, 3]

    os.remove(os.path.join(base, "ISIC2018_Task2_Training_GroundTruth_v3", "ISIC_0000001_attribute_streaks.png"))
    with pytest.raises(DataFileError, match="ISIC_0000001_attribute_streaks.png"):
        isic.load_isic2018_task2(str(tmp_path), "train")


# ---------------------------------------------------------------------------------------------
# ISIC 2017 Part 2 (.mat)
# ---------------------------------------------------------------------------------------------
def test_isic2017_part2_mat(tmp_path, use_root):
    from scipy.io import savemat

    base = os.path.join(tmp_path, "isic2017_part2")
    smgt = np.zeros((20, 24), dtype=np.uint8)
    smgt[2:8, 2:8] = 4
    smgt[10:15, 3:20] = 6
    smgt[15:18, 0:5] = 1
    layout = {"ISIC_0000000": "Training", "ISIC_0000001": "Training", "ISIC_0000100": "Validation"}
    for k, (i, part) in enumerate(layout.items()):
        _img(os.path.join(base, f"ISIC-2017_{part}_Data", f"{i}.jpg"), seed=k)
        mat_dir = os.path.join(base, f"ISIC-2017_{part}_Part2_GroundTruth", "gtann")
        os.makedirs(mat_dir, exist_ok=True)
        savemat(os.path.join(mat_dir, f"{i}.mat"), {"smgt": smgt})
    with open(os.path.join(base, "train.txt"), "w") as f:
        f.write("ISIC_0000000\nISIC_0000100\n")  # the id lists mix the official folders
    with open(os.path.join(base, "val.txt"), "w") as f:
        f.write("ISIC_0000001\n")
    use_root("isic", tmp_path)
    dicts = DatasetCatalog.get("isic2017_part2_mat_train")
    assert [d["image_id"] for d in dicts] == ["ISIC_0000000", "ISIC_0000100"]
    assert "Validation_Part2_GroundTruth/gtann/ISIC_0000100.mat" in dicts[1]["sem_seg_file_name"]
    meta = MetadataCatalog.get("isic2017_part2_mat_train")
    assert len(meta.classes) == 7 and meta.has_background_class and meta.mask_encoding == "mat"
    assert meta.evaluator_type == "sem_seg"
    assert (read_sem_seg(dicts[0]["sem_seg_file_name"], meta) == smgt).all()

    cfg = get_cfg()
    cfg.DATASETS.TRAIN = ("isic2017_part2_mat_train",)
    cfg.INPUT.MIN_SIZE_TRAIN = (20,)
    cfg.INPUT.CROP.ENABLED = False
    cfg.INPUT.RANDOM_FLIP = "none"
    out = build_dataset_mapper(cfg, is_train=True)(dict(dicts[0], _aug_seed=0))
    assert (out["sem_seg"].numpy() == smgt).all()
    assert out["instances"].gt_classes.tolist() == [0, 1, 4, 6]  # background is a class here

    savemat(os.path.join(base, "ISIC-2017_Training_Part2_GroundTruth", "gtann", "ISIC_0000000.mat"),
            {"smgt": np.full((20, 24), 7, np.uint8)})
    with pytest.raises(DataFileError, match=r"ISIC_0000000\.mat.*\[7\]"):
        read_sem_seg(dicts[0]["sem_seg_file_name"], meta)
    with open(os.path.join(base, "test.txt"), "w") as f:
        f.write("ISIC_0009999\n")
    with pytest.raises(DataFileError, match="ISIC_0009999"):
        isic.load_isic2017_part2_mat(str(tmp_path), "test")


# ---------------------------------------------------------------------------------------------
# PH2
# ---------------------------------------------------------------------------------------------
def test_ph2_release_layout(tmp_path, use_root):
    imgs = os.path.join(tmp_path, "ph2", "PH2Dataset", "PH2 Dataset images")
    for k, c in enumerate(["IMD002", "IMD003"]):
        _img(os.path.join(imgs, c, f"{c}_Dermoscopic_Image", f"{c}.bmp"), seed=k, fmt="BMP")
        _mask(os.path.join(imgs, c, f"{c}_lesion", f"{c}_lesion.bmp"), _fg())
        os.makedirs(os.path.join(imgs, c, f"{c}_roi"), exist_ok=True)
    use_root("ph2", tmp_path)
    dicts = DatasetCatalog.get("ph2_sem_seg")
    assert [d["image_id"] for d in dicts] == ["IMD002", "IMD003"]
    assert MetadataCatalog.get("ph2_sem_seg").evaluator_type == "isic_task1"
    lab = read_sem_seg(dicts[0]["sem_seg_file_name"], MetadataCatalog.get("ph2_sem_seg"))
    assert (lab == np.where(_fg(), 0, 1)).all()

    os.remove(os.path.join(imgs, "IMD003", "IMD003_lesion", "IMD003_lesion.bmp"))
    with pytest.raises(DataFileError, match="IMD003_lesion.bmp"):
        ph2.load_ph2(str(tmp_path))


# ---------------------------------------------------------------------------------------------
# skinformer.data.preparation.isic (datasets/prepare_isic.py)
# ---------------------------------------------------------------------------------------------
def test_prepare_isic_installs_official_zips_and_checks(tmp_path, monkeypatch, capsys):
    import shutil

    from skinformer.data.preparation import isic as prep

    staging = tmp_path / "staging"
    base = _isic2018(staging)
    for gt, ids in (("ISIC2018_Task2_Training_GroundTruth_v3", ["ISIC_0000000", "ISIC_0000001", "ISIC_0000002"]),
                    ("ISIC2018_Task2_Validation_GroundTruth", ["ISIC_0000010"]),
                    ("ISIC2018_Task2_Test_GroundTruth", ["ISIC_0000020", "ISIC_0000021"])):
        for i in ids:
            for a in isic.ISIC2018_TASK2_ATTRIBUTES:
                _mask(os.path.join(base, gt, f"{i}_attribute_{a}.png"), _fg() if a == "streaks" else ~_fg())
    dl = tmp_path / "download"
    dl.mkdir()
    for folder in os.listdir(staging / "isic2018"):
        shutil.make_archive(str(dl / folder), "zip", root_dir=staging / "isic2018", base_dir=folder)
    monkeypatch.setenv("SKINFORMER_DATASETS", str(tmp_path / "elsewhere"))  # restored after the test
    root = tmp_path / "root"
    assert prep.main(["--year", "2018", "--download", str(dl), "--root", str(root), "--check", "-1"]) == 0
    out = capsys.readouterr().out
    assert "isic_sem_seg_train" in out and "isic2018_task2_test" in out and "ERROR" not in out
    assert len(isic.load_isic_task1(str(root), "2018", "train")) == 3
    # a broken file makes the check fail and names it
    with open(root / "isic2018" / "ISIC2018_Task1_Test_GroundTruth" / "ISIC_0000021_segmentation.png", "wb") as f:
        f.write(b"x")
    assert prep.main(["--year", "2018", "--root", str(root), "--check", "-1"]) == 1
    assert "ISIC_0000021_segmentation.png" in capsys.readouterr().out
