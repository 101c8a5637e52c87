"""Training-loader speed-ups that must not change what the model sees: the decode-once cache,
uint8 lookup-table colour ops, histogram-based instances, NUM_WORKERS chosen for the machine."""
import pickle

import cv2
import numpy as np
import pytest
import torch

from skinformer.config import get_cfg
from skinformer.data.build import build_train_loader, resolve_num_workers
from skinformer.data.common import sem_seg_to_instances
from skinformer.data.decode_cache import DecodeCache, build_decode_cache, estimate_decoded_bytes
from skinformer.data.mappers import SemanticMapper
from skinformer.data.transforms import ColorAugSSDTransform, build_augmentation

META = {"classes": ["lesion"], "ignore_label": 255, "has_background_class": False, "mask_encoding": "binary"}


def _pairs(tmp_path, n=3, h=24, w=32):
    rng = np.random.default_rng(0)
    dicts = []
    for i in range(n):
        img = rng.integers(0, 255, (h, w, 3)).astype(np.uint8)
        mask = (rng.random((h, w)) > 0.5).astype(np.uint8) * 255
        fi, fm = str(tmp_path / f"{i}.png"), str(tmp_path / f"{i}_m.png")
        cv2.imwrite(fi, img)
        cv2.imwrite(fm, mask)
        dicts.append({"file_name": fi, "sem_seg_file_name": fm, "height": h, "width": w, "image_id": str(i)})
    return dicts


def test_cache_decodes_once_and_hands_out_copies():
    calls = []

    def read():
        calls.append(1)
        return np.arange(6, dtype=np.int64).reshape(2, 3)

    c = DecodeCache(1 << 20)
    a = c.get("k", read)
    b = c.get("k", read)
    assert len(calls) == 1 and c.hits == 1 and c.misses == 1
    assert b.dtype == np.int64 and np.array_equal(a, b)
    b[0, 0] = 99  # in-place augmentation must not reach the cache
    assert c.get("k", read)[0, 0] == 0
    assert c.nbytes == 6  # label map stored as uint8
    # budget: a second entry that does not fit is decoded every time
    small = DecodeCache(8)
    small.get("a", read)
    small.get("b", read)
    small.get("b", read)
    assert len(small) == 1 and small.misses == 3
    # a worker gets an empty cache, not a pickled copy of the parent's
    assert len(pickle.loads(pickle.dumps(c))) == 0
    with pytest.raises(ValueError, match="max_bytes"):
        DecodeCache(0)


def test_cache_read_errors_propagate_and_cache_nothing():
    c = DecodeCache(1 << 20)

    def bad():
        raise OSError("broken file")

    with pytest.raises(OSError):
        c.get("x", bad)
    assert len(c) == 0


def test_auto_mode_follows_the_budget():
    dicts = [{"height": 256, "width": 256, "sem_seg_file_name": "m"}] * 10  # 10 x 256 KiB
    assert estimate_decoded_bytes(dicts) == 10 * 256 * 256 * 4
    assert build_decode_cache("auto", 100, dicts, num_processes=2) is not None  # 5 MB needed per copy
    assert build_decode_cache("auto", 4, dicts, num_processes=2) is None
    assert build_decode_cache("on", 4, dicts, num_processes=2).max_bytes == 2 * 2**20
    assert build_decode_cache("off", 100, dicts, 1) is None
    assert build_decode_cache("auto", 100, [{"file_name": "no size"}], 1) is None
    with pytest.raises(ValueError, match="DATALOADER.DECODE_CACHE"):
        build_decode_cache("always", 100, dicts, 1)


def test_cached_mapper_output_is_identical(tmp_path):
    cfg = get_cfg()
    cfg.INPUT.COLOR_AUG_SSD = True
    cfg.INPUT.ROTATION.PROB = 0.5
    cfg.INPUT.CROP.SIZE = (16, 16)
    cfg.INPUT.MIN_SIZE_TRAIN = (24,)
    dicts = _pairs(tmp_path)
    plain = SemanticMapper(True, augmentations=build_augmentation(cfg, True), metadata=META)
    cached = SemanticMapper(True, augmentations=build_augmentation(cfg, True), metadata=META)
    cached.decode_cache = DecodeCache(1 << 20)
    for epoch in range(2):
        for i, d in enumerate(dicts):
            a, b = plain(dict(d, _aug_seed=10 * epoch + i)), cached(dict(d, _aug_seed=10 * epoch + i))
            assert torch.equal(a["image"], b["image"]) and torch.equal(a["sem_seg"], b["sem_seg"])
    assert cached.decode_cache.misses == 2 * len(dicts) and cached.decode_cache.hits == 2 * len(dicts)


def test_train_loader_installs_the_cache(tmp_path):
    from skinformer.data.catalog import DatasetCatalog, MetadataCatalog

    name = "_decode_cache_pairs"
    dicts = _pairs(tmp_path)
    if name not in DatasetCatalog:
        DatasetCatalog.register(name, lambda: dicts)
        MetadataCatalog.get(name).set(**META, evaluator_type="isic_task1", mapper="SemanticMapper")
    cfg = get_cfg()
    cfg.DATASETS.TRAIN = (name,)
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.SOLVER.IMS_PER_BATCH = 2
    cfg.INPUT.CROP.SIZE = (16, 16)
    loader = build_train_loader(cfg)
    batch = next(iter(loader))
    assert len(batch) == 2 and loader.mapper.decode_cache is not None and len(loader.mapper.decode_cache) > 0
    cfg.DATALOADER.DECODE_CACHE = "off"
    assert build_train_loader(cfg).mapper.decode_cache is None


def _convert_float(img, alpha=1.0, beta=0.0):  # the float reference the lookup tables replace
    return np.clip(img.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)


def test_color_lookup_tables_match_float_reference():
    img = np.random.default_rng(1).integers(0, 256, (20, 30, 3)).astype(np.uint8)
    for alpha, beta in [(1.0, 31.7), (1.0, -32.0), (0.6, 0.0), (1.43, 0.0)]:
        np.testing.assert_array_equal(ColorAugSSDTransform._convert(img, alpha, beta), _convert_float(img, alpha, beta))
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
    hsv[:, :, 0] = ((hsv[:, :, 0].astype(np.int32) + 17) % 180).astype(np.uint8)
    expected = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    np.testing.assert_array_equal(ColorAugSSDTransform(ops=[("hue", 17)]).apply_image(img), expected)


def test_instances_from_histogram_match_unique():
    rng = np.random.default_rng(2)
    seg = rng.integers(0, 4, (30, 40)).astype(np.int64)
    seg[0, :5] = 255
    seg[seg == 2] = 3  # class 2 absent
    inst = sem_seg_to_instances(seg, 3, 255)  # 3 = background-not-a-class
    assert inst.gt_classes.tolist() == [0, 1]
    assert torch.equal(inst.gt_masks[1], torch.from_numpy(seg == 1))
    neg = seg.copy()
    neg[1, 1] = -1  # the fallback path keeps working for negative labels
    assert sem_seg_to_instances(neg, 3, 255).gt_classes.tolist() == [0, 1]


def test_num_workers_auto(monkeypatch):
    import skinformer.data.build as build

    assert resolve_num_workers(3) == 3
    monkeypatch.setattr(build, "_available_cpus", lambda: 2)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    assert resolve_num_workers(-1) == 1
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert resolve_num_workers(-1) == 0
    monkeypatch.setattr(build, "_available_cpus", lambda: 64)
    assert resolve_num_workers(-1) == 4
    with pytest.raises(ValueError, match="NUM_WORKERS"):
        resolve_num_workers(-2)
