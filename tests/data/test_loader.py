import itertools
import logging

import numpy as np
import pytest
import torch
from PIL import Image

from skinformer.config import get_cfg
from skinformer.data import transforms as T
from skinformer.data.build import TrainLoader, build_test_loader, build_train_loader, get_dataset_dicts
from skinformer.data.catalog import DatasetCatalog, Metadata, MetadataCatalog
from skinformer.data.mappers import SemanticMapper
from skinformer.data.samplers import InferenceSampler, TrainingSampler, sample_seed

META = Metadata(name="loader_test", classes=["lesion"], ignore_label=255, has_background_class=False,
                mask_encoding="binary")


@pytest.fixture(scope="module")
def dicts(tmp_path_factory):
    root = tmp_path_factory.mktemp("loader_ds")
    rng = np.random.default_rng(0)
    out = []
    for i in range(10):
        img = rng.integers(0, 255, (24, 28, 3), dtype=np.uint8)
        fg = rng.random((24, 28)) > 0.5
        Image.fromarray(img).save(root / f"{i}.png")
        Image.fromarray(fg.astype(np.uint8) * 255).save(root / f"{i}_m.png")
        out.append({"file_name": str(root / f"{i}.png"), "sem_seg_file_name": str(root / f"{i}_m.png"),
                    "height": 24, "width": 28, "image_id": str(i)})
    return out


def _mapper():
    return SemanticMapper(augmentations=[T.RandomCrop("absolute", (16, 16)), T.RandomFlip(), T.ColorAugSSD()],
                          metadata=META)


def _take(it, n):
    return [next(it) for _ in range(n)]


def _same(batches_a, batches_b):
    assert len(batches_a) == len(batches_b)
    for ba, bb in zip(batches_a, batches_b):
        assert [d["file_name"] for d in ba] == [d["file_name"] for d in bb]
        for da, db in zip(ba, bb):
            assert torch.equal(da["image"], db["image"]) and torch.equal(da["sem_seg"], db["sem_seg"])


def test_batches_are_lists_of_mapped_dicts(dicts):
    loader = TrainLoader(dicts, _mapper(), batch_size=3, seed=1)
    batch = next(iter(loader))
    assert isinstance(batch, list) and len(batch) == 3
    assert batch[0]["image"].shape == (3, 16, 16)
    assert loader.state_dict()["num_batches"] == 1


def test_exact_resume_independent_of_num_workers(dicts):
    reference = _take(iter(TrainLoader(dicts, _mapper(), batch_size=3, seed=5, num_workers=0)), 7)
    first = TrainLoader(dicts, _mapper(), batch_size=3, seed=5, num_workers=0)
    it = iter(first)
    _same(_take(it, 4), reference[:4])
    state = first.state_dict()
    assert state["num_batches"] == 4 and state["seed"] == 5
    for workers in (0, 2):
        resumed = TrainLoader(dicts, _mapper(), batch_size=3, seed=123, num_workers=workers)  # seed restored
        resumed.load_state_dict(state)
        _same(_take(iter(resumed), 3), reference[4:])
    # an uninterrupted multi-worker stream is the same stream
    _same(_take(iter(TrainLoader(dicts, _mapper(), batch_size=3, seed=5, num_workers=2)), 7), reference)


def test_load_state_dict_restarts_live_iterator(dicts):
    reference = _take(iter(TrainLoader(dicts, _mapper(), batch_size=2, seed=2)), 5)
    loader = TrainLoader(dicts, _mapper(), batch_size=2, seed=2)
    it = iter(loader)
    _take(it, 4)
    loader.load_state_dict({"num_batches": 1, "seed": 2})
    _same(_take(it, 4), reference[1:5])


def test_stream_covers_each_item_once_per_epoch(dicts):
    loader = TrainLoader(dicts, lambda d: d, batch_size=5, seed=0)
    it = iter(loader)
    epoch1 = [d["image_id"] for b in _take(it, 2) for d in b]
    epoch2 = [d["image_id"] for b in _take(it, 2) for d in b]
    assert sorted(epoch1) == sorted(epoch2) == sorted(d["image_id"] for d in dicts)
    assert epoch1 != epoch2  # reshuffled


def test_aug_seed_from_seed_and_position(dicts):
    seen = []
    loader = TrainLoader(dicts, lambda d: seen.append(d["_aug_seed"]) or d, batch_size=2, seed=9)
    _take(iter(loader), 3)
    assert seen == [sample_seed(9, p) for p in range(6)]
    assert len(set(seen)) == 6


def test_ddp_sharding_with_explicit_ranks():
    world, n = 3, 12
    samplers = [TrainingSampler(n, seed=4, rank=r, world_size=world) for r in range(world)]
    shards = [list(itertools.islice(iter(s), n // world)) for s in samplers]
    flat = sorted(i for s in shards for i in s)
    assert flat == list(range(n))  # disjoint shards of the first permutation
    perm = samplers[0].permutation(0)
    for r in range(world):
        assert shards[r] == list(perm[r::world])
    # the loaders of different ranks hand out different samples with different aug seeds
    positions = [{s.global_position(k) for k in range(8)} for s in samplers]
    assert not (positions[0] & positions[1]) and not (positions[1] & positions[2])


def test_ddp_batch_size_per_rank(dicts):
    cfg = get_cfg()
    cfg.SOLVER.IMS_PER_BATCH = 4
    cfg.SEED = 1
    cfg.DATALOADER.NUM_WORKERS = 0
    l0 = build_train_loader(cfg, mapper=lambda d: d, dataset=dicts, rank=0, world_size=2)
    l1 = build_train_loader(cfg, mapper=lambda d: d, dataset=dicts, rank=1, world_size=2)
    b0, b1 = next(iter(l0)), next(iter(l1))
    assert len(b0) == len(b1) == 2
    assert not {d["image_id"] for d in b0} & {d["image_id"] for d in b1}
    cfg.SOLVER.IMS_PER_BATCH = 5
    with pytest.raises(ValueError, match="IMS_PER_BATCH"):
        build_train_loader(cfg, mapper=lambda d: d, dataset=dicts, world_size=2)


def test_unreadable_sample_replaced_deterministically(dicts, tmp_path, caplog):
    broken = [dict(d) for d in dicts]
    bad_file = tmp_path / "bad.png"
    bad_file.write_bytes(open(dicts[3]["file_name"], "rb").read()[:50])
    broken[3]["file_name"] = str(bad_file)
    with caplog.at_level(logging.WARNING):
        batches = _take(iter(TrainLoader(broken, _mapper(), batch_size=5, seed=0)), 4)
    assert any(str(bad_file) in r.getMessage() for r in caplog.records)
    names = [d["file_name"] for b in batches for d in b]
    assert str(bad_file) not in names and len(names) == 20
    # the replacement is the next dataset item; same result with workers
    _same(_take(iter(TrainLoader(broken, _mapper(), batch_size=5, seed=0, num_workers=2)), 4), batches)


def test_all_unreadable_raises(tmp_path):
    bad = tmp_path / "x.png"
    bad.write_bytes(b"not an image")
    d = [{"file_name": str(bad), "sem_seg_file_name": str(bad), "height": 1, "width": 1, "image_id": "x"}]
    with pytest.raises(RuntimeError, match="unreadable"):
        next(iter(TrainLoader(d, _mapper(), batch_size=1, seed=0)))


def test_creating_loader_does_not_consume_global_torch_rng(dicts):
    torch.manual_seed(0)
    state = torch.get_rng_state()
    _take(iter(TrainLoader(dicts, _mapper(), batch_size=2, seed=0, num_workers=2)), 1)
    assert torch.equal(torch.get_rng_state(), state)


def test_inference_sampler_shards():
    for n, world in [(10, 3), (2, 4), (0, 2)]:
        shards = [list(InferenceSampler(n, rank=r, world_size=world)) for r in range(world)]
        assert [i for s in shards for i in s] == list(range(n))
        assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_test_loader_order_and_batch_size(dicts):
    cfg = get_cfg()
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.INPUT.MIN_SIZE_TEST = 12
    loader = build_test_loader(cfg, dicts, batch_size=4)
    batches = list(loader)
    assert [len(b) for b in batches] == [4, 4, 2]
    assert [d["image_id"] for b in batches for d in b] == [d["image_id"] for d in dicts]
    assert batches[0][0]["image"].shape == (3, 12, 14) and batches[0][0]["height"] == 24
    shard = list(build_test_loader(cfg, dicts, batch_size=1, rank=1, world_size=2))
    assert [b[0]["image_id"] for b in shard] == [d["image_id"] for d in dicts[5:]]


@pytest.fixture
def registered(dicts):
    names = {"ld_a": ["lesion"], "ld_b": ["lesion"], "ld_c": ["polyp"], "ld_empty": ["lesion"]}
    for n, classes in names.items():
        DatasetCatalog.register(n, (lambda: []) if n == "ld_empty" else (lambda: [dict(d) for d in dicts]))
        MetadataCatalog.get(n).set(classes=classes)
    yield
    for n in names:
        DatasetCatalog.remove(n)
        MetadataCatalog.remove(n)


def test_get_dataset_dicts(registered):
    out = get_dataset_dicts(["ld_a", "ld_b"])
    assert len(out) == 20 and out[0]["dataset_name"] == "ld_a" and out[-1]["dataset_name"] == "ld_b"
    with pytest.raises(ValueError, match="ld_empty.*empty"):
        get_dataset_dicts("ld_empty")
    with pytest.raises(ValueError, match="different classes"):
        get_dataset_dicts(["ld_a", "ld_c"])


def _size_mismatch(dicts, tmp_path, i):
    small = tmp_path / f"small{i}.png"
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(small)
    return dict(dicts[i], sem_seg_file_name=str(small))


def test_size_mismatch_is_skipped_like_unreadable_and_counted(dicts, tmp_path, caplog):
    """One policy for every kind of bad sample: skip with a warning, count, report at the end."""
    broken = [dict(d) for d in dicts]
    broken[2] = _size_mismatch(dicts, tmp_path, 2)
    unreadable = tmp_path / "bad.png"
    unreadable.write_bytes(b"not an image")
    broken[6]["file_name"] = str(unreadable)
    loader = TrainLoader(broken, _mapper(), batch_size=5, seed=0, max_bad_samples=5)
    with caplog.at_level(logging.WARNING):
        batches = _take(iter(loader), 4)  # two epochs: both bad samples are met
    names = [d["file_name"] for b in batches for d in b]
    assert len(names) == 20 and str(unreadable) not in names and broken[2]["file_name"] not in names
    assert set(loader.bad_samples) == {broken[2]["file_name"], str(unreadable)}
    assert "size mismatch" in loader.bad_samples[broken[2]["file_name"]]
    with caplog.at_level(logging.WARNING):
        assert loader.report_bad_samples() == 2
    assert "2 bad training sample(s) were skipped" in caplog.records[-1].getMessage()
    # same stream with loader workers
    _same(_take(iter(TrainLoader(broken, _mapper(), batch_size=5, seed=0, num_workers=2)), 4), batches)


def test_too_many_bad_samples_stop_training(dicts, tmp_path):
    broken = [_size_mismatch(dicts, tmp_path, i) if i < 3 else dict(d) for i, d in enumerate(dicts)]
    with pytest.raises(RuntimeError, match=r"3 bad training samples exceed DATALOADER.MAX_BAD_SAMPLES \(2\)"):
        _take(iter(TrainLoader(broken, _mapper(), batch_size=5, seed=0, max_bad_samples=2)), 4)


def test_max_bad_samples_config_key(dicts):
    cfg = get_cfg()
    cfg.SOLVER.IMS_PER_BATCH = 2
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.DATALOADER.MAX_BAD_SAMPLES = 7
    assert build_train_loader(cfg, mapper=_mapper(), dataset=dicts).max_bad_samples == 7
