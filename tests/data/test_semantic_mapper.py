import logging

import numpy as np
import pytest
import torch
from PIL import Image

from skinformer.config import get_cfg
from skinformer.data import transforms as T
from skinformer.data.catalog import DatasetCatalog, Metadata, MetadataCatalog
from skinformer.data.mappers import DATASET_MAPPER_REGISTRY, InferenceMapper, SemanticMapper, build_dataset_mapper
from skinformer.data.mask_io import DataFileError


def _meta(**kw):
    base = dict(name="t", classes=["lesion"], ignore_label=255, has_background_class=False, mask_encoding="binary")
    base.update(kw)
    return Metadata(**base)


def _write_pair(tmp_path, stem="a", h=40, w=50, mask_scale=255, mask_hw=None):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    fg = np.zeros(mask_hw or (h, w), dtype=bool)
    fg[5:20, 10:30] = True
    Image.fromarray(img).save(tmp_path / f"{stem}.png")
    Image.fromarray(fg.astype(np.uint8) * mask_scale).save(tmp_path / f"{stem}_mask.png")
    return {"file_name": str(tmp_path / f"{stem}.png"), "sem_seg_file_name": str(tmp_path / f"{stem}_mask.png"),
            "height": h, "width": w, "image_id": stem}, img, fg


def test_registered_names():
    assert "SemanticMapper" in DATASET_MAPPER_REGISTRY and "InferenceMapper" in DATASET_MAPPER_REGISTRY


def test_output_keys_shapes_dtypes_and_instances(tmp_path):
    d, img, fg = _write_pair(tmp_path)
    mapper = SemanticMapper(is_train=True, augmentations=[], metadata=_meta())
    out = mapper(dict(d, _aug_seed=1))
    assert {"file_name", "image_id", "height", "width", "image", "sem_seg", "instances"} <= set(out)
    assert "_aug_seed" not in out
    assert out["image"].dtype == torch.uint8 and out["image"].shape == (3, 40, 50)
    assert torch.equal(out["image"], torch.from_numpy(img).permute(2, 0, 1))
    assert out["sem_seg"].dtype == torch.int64 and out["sem_seg"].shape == (40, 50)
    assert (out["sem_seg"][torch.from_numpy(fg)] == 0).all() and (out["sem_seg"][~torch.from_numpy(fg)] == 1).all()
    inst = out["instances"]
    assert inst.image_size == (40, 50)
    assert inst.gt_classes.tolist() == [0] and inst.gt_classes.dtype == torch.int64
    assert inst.gt_masks.dtype == torch.bool and torch.equal(inst.gt_masks[0], out["sem_seg"] == 0)
    assert inst.gt_boxes.tensor.tolist() == [[10.0, 5.0, 30.0, 20.0]]
    assert (out["height"], out["width"]) == (40, 50)


def test_instances_match_sem_seg_after_augmentation_multiclass(tmp_path):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (60, 60, 3), dtype=np.uint8)
    lab = np.full((60, 60), 3, np.uint8)  # 3 = background (no class) for 3 classes
    lab[5:20, 5:20] = 0
    lab[30:50, 10:40] = 2
    lab[0:3] = 255
    Image.fromarray(img).save(tmp_path / "m.png")
    Image.fromarray(lab).save(tmp_path / "m_lab.png")
    d = {"file_name": str(tmp_path / "m.png"), "sem_seg_file_name": str(tmp_path / "m_lab.png"),
         "height": 60, "width": 60, "image_id": "m"}
    meta = _meta(classes=["a", "b", "c"], mask_encoding="index")
    mapper = SemanticMapper(augmentations=[T.RandomRotation((-30, 30)), T.RandomFlip(0.5)], metadata=meta)
    for seed in range(4):
        out = mapper(dict(d, _aug_seed=seed))
        sem, inst = out["sem_seg"], out["instances"]
        present = sorted(int(c) for c in sem.unique() if c < 3)
        assert inst.gt_classes.tolist() == present == [0, 2]
        for c, m in zip(inst.gt_classes, inst.gt_masks):
            assert torch.equal(m, sem == c)


def test_0_255_and_0_1_masks_give_same_output(tmp_path):
    a, _, _ = _write_pair(tmp_path, "a", mask_scale=255)
    b, _, _ = _write_pair(tmp_path, "b", mask_scale=1)
    mapper = SemanticMapper(augmentations=[T.RandomCrop("absolute", (20, 20)), T.RandomFlip()], metadata=_meta())
    oa, ob = mapper(dict(a, _aug_seed=5)), mapper(dict(b, _aug_seed=5))
    assert torch.equal(oa["sem_seg"], ob["sem_seg"]) and torch.equal(oa["image"], ob["image"])


def test_same_seed_same_sample_different_seeds_vary(tmp_path):
    d, _, _ = _write_pair(tmp_path)
    mapper = SemanticMapper(augmentations=[T.RandomCrop("absolute", (16, 16)), T.ColorAugSSD()], metadata=_meta())
    o1, o2 = mapper(dict(d, _aug_seed=3)), mapper(dict(d, _aug_seed=3))
    assert torch.equal(o1["image"], o2["image"]) and torch.equal(o1["sem_seg"], o2["sem_seg"])
    outs = {mapper(dict(d, _aug_seed=s))["image"].sum().item() for s in range(6)}
    assert len(outs) > 3


def test_size_mismatch_error_names_both_files(tmp_path):
    d, _, _ = _write_pair(tmp_path, mask_hw=(30, 50))
    mapper = SemanticMapper(augmentations=[], metadata=_meta())
    with pytest.raises(DataFileError) as e:
        mapper(dict(d, _aug_seed=0))
    msg = str(e.value)
    assert d["file_name"] in msg and d["sem_seg_file_name"] in msg and "50x40" in msg and "50x30" in msg


def _truncate(path):
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])


def test_truncated_image_skipped_in_training_raises_in_test(tmp_path, caplog):
    d, _, _ = _write_pair(tmp_path)
    _truncate(d["file_name"])
    mapper = SemanticMapper(is_train=True, augmentations=[], metadata=_meta())
    with caplog.at_level(logging.WARNING):
        assert mapper(dict(d, _aug_seed=0)) is None
    assert any(d["file_name"] in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    with pytest.raises(DataFileError, match=d["file_name"]):
        SemanticMapper(is_train=False, augmentations=[], metadata=_meta())(dict(d))
    with pytest.raises(DataFileError, match=d["file_name"]):
        InferenceMapper(augmentations=[])(dict(d))


def test_size_divisibility_pads_image_0_and_mask_ignore(tmp_path):
    d, _, _ = _write_pair(tmp_path, h=40, w=50)
    out = SemanticMapper(augmentations=[], metadata=_meta(), size_divisibility=32)(dict(d, _aug_seed=0))
    assert out["image"].shape == (3, 64, 64) and out["sem_seg"].shape == (64, 64)
    assert (out["sem_seg"][40:] == 255).all() and (out["sem_seg"][:, 50:] == 255).all()
    assert (out["image"][:, 40:] == 0).all()
    assert (out["height"], out["width"]) == (40, 50)
    assert out["instances"].gt_masks.shape == (1, 64, 64)


def test_metadata_picked_by_dataset_name(tmp_path):
    d, _, fg = _write_pair(tmp_path)
    mapper = SemanticMapper(augmentations=[], metadata={"x": _meta().as_dict(),
                                                        "y": _meta(has_background_class=True,
                                                                   classes=["bg", "lesion"]).as_dict()})
    assert mapper(dict(d, dataset_name="x"))["sem_seg"][fg].unique().tolist() == [0]
    assert mapper(dict(d, dataset_name="y"))["sem_seg"][fg].unique().tolist() == [1]
    with pytest.raises(KeyError, match="no metadata for dataset 'z'"):
        mapper(dict(d, dataset_name="z"))


def test_inference_mapper_resizes_and_keeps_original_size(tmp_path):
    d, _, _ = _write_pair(tmp_path, h=40, w=50)
    cfg = get_cfg()
    cfg.INPUT.MIN_SIZE_TEST = 80
    out = DATASET_MAPPER_REGISTRY.get("InferenceMapper")(cfg, False)(dict(d))
    assert out["image"].shape == (3, 80, 100) and (out["height"], out["width"]) == (40, 50)
    assert "sem_seg" not in out


@pytest.fixture
def tiny_folder_dataset(tmp_path):
    names = []
    for ignore in (255, 254):
        name = f"tiny_mapper_ds_{ignore}"
        d, _, _ = _write_pair(tmp_path, f"s{ignore}")
        DatasetCatalog.register(name, lambda d=d: [d])
        MetadataCatalog.get(name).set(classes=["lesion"], ignore_label=ignore, has_background_class=False,
                                      mask_encoding="binary", mapper="SemanticMapper")
        names.append(name)
    yield names
    for n in names:
        DatasetCatalog.remove(n)
        MetadataCatalog.remove(n)


def test_from_config_via_registry(tiny_folder_dataset):
    cfg = get_cfg()
    cfg.DATASETS.TRAIN = (tiny_folder_dataset[0],)
    cfg.INPUT.MIN_SIZE_TRAIN = (32,)
    cfg.INPUT.CROP.SIZE = (16, 16)
    mapper = build_dataset_mapper(cfg, is_train=True)
    assert isinstance(mapper, SemanticMapper)
    d = DatasetCatalog.get(tiny_folder_dataset[0])[0]
    out = mapper(dict(d, dataset_name=tiny_folder_dataset[0], _aug_seed=0))
    assert out["image"].shape == (3, 16, 16)
    cfg.DATASETS.TRAIN = (tiny_folder_dataset[1],)
    with pytest.raises(ValueError, match="ignore_label 254.*IGNORE_VALUE"):
        build_dataset_mapper(cfg, is_train=True)
