"""Distributed reduction: only the small statistics are reduced, results equal the 1-process ones."""
import json

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from skinformer.evaluation import (COCOInstanceEvaluator, ISICTask1Evaluator, ISICTask2Evaluator, SemSegEvaluator,
                                   all_reduce_statistics)
from skinformer.structures import Boxes, Instances
from skinformer.utils import comm

from eval_helpers import write_mask

N_IMAGES = 6


def _make_data(tmp_path):
    rng = np.random.default_rng(5)
    items = []
    for i in range(N_IMAGES):
        h, w = 8 + i, 10 + 2 * i
        fg = rng.random((h, w)) < 0.4
        label = rng.integers(0, 3, size=(h, w)).astype(np.uint8)
        label[0, :2] = 255
        attrs = [rng.random((h, w)) < 0.2 for _ in range(2)]
        items.append({
            "file_name": f"im{i}.jpg", "image_id": i, "height": h, "width": w,
            "sem_seg_file_name": write_mask(tmp_path / f"fg{i}.png", fg),
            "label_file": write_mask(tmp_path / f"lab{i}.png", label),
            "label_file_names": [write_mask(tmp_path / f"a{i}_{k}.png", a) for k, a in enumerate(attrs)],
            "seed": i,
        })
    return items


def _outputs(item):
    g = torch.Generator().manual_seed(item["seed"])
    h, w = item["height"], item["width"]
    inst = Instances((h, w))
    masks = torch.zeros(1, h, w, dtype=torch.bool)
    masks[0, 1:5, 2:6] = True
    inst.pred_masks = masks
    inst.pred_boxes = Boxes(torch.tensor([[2.0, 1.0, 6.0, 5.0]]))
    inst.scores = torch.rand(1, generator=g)
    inst.pred_classes = torch.zeros(1, dtype=torch.int64)
    return {"binary": torch.rand(1, h, w, generator=g), "multi": torch.rand(2, h, w, generator=g), "instances": inst}


def _gt_dicts(items):
    return [{"file_name": it["file_name"], "image_id": it["image_id"], "height": it["height"], "width": it["width"],
             "annotations": [{"bbox": [3, 2, 4, 4], "bbox_mode": 1, "category_id": 0,
                              "segmentation": [[3, 2, 7, 2, 7, 6, 3, 6]]}]} for it in items]


def _evaluate(items, rank, world):
    evs = {
        "t1": ISICTask1Evaluator(label_space={"classes": ["lesion"]}),
        "t2": ISICTask2Evaluator(classes=["x", "y"]),
        "ss": SemSegEvaluator(label_space={"classes": ["a", "b"], "mask_encoding": "index"}, roc_auc=True, roc_auc_bins=32),
        "coco": COCOInstanceEvaluator(classes=["polyp"], dataset_dicts=_gt_dicts(items)),
    }
    for e in evs.values():
        e.reset()
    for it in items[rank::world]:
        out = _outputs(it)
        inp = {k: it[k] for k in ("file_name", "image_id", "height", "width")}
        evs["t1"].process([dict(inp, sem_seg_file_name=it["sem_seg_file_name"])], [{"sem_seg": out["binary"]}])
        evs["t2"].process([dict(inp, label_file_names=it["label_file_names"])], [{"sem_seg": out["multi"]}])
        evs["ss"].process([dict(inp, sem_seg_file_name=it["label_file"])], [{"sem_seg": out["multi"]}])
        evs["coco"].process([inp], [{"instances": out["instances"]}])
    res = {}
    for e in evs.values():
        res.update(e.evaluate())
    return res


def _worker(rank, world, init_file, items, out_file):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        res = _evaluate(items, rank, world)
        if rank == 0:
            with open(out_file, "w") as f:
                json.dump(res, f)
        else:
            assert res == {}
        # the reduction helper sums and leaves the input untouched
        t = torch.tensor([rank + 1.0])
        assert float(all_reduce_statistics(t)) == sum(range(1, world + 1)) and float(t) == rank + 1.0
    finally:
        # waits for the peer before closing: a rank closing mid-message makes gloo abort the other one
        comm.destroy_process_group()


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for task in a:
        for k in a[task]:
            x, y = a[task][k], b[task][k]
            assert (np.isnan(x) and np.isnan(y)) or x == pytest.approx(y, rel=1e-9, abs=1e-12), (task, k, x, y)


def test_reduction_with_two_identical_ranks(tmp_path, monkeypatch):
    """Fake a second rank holding the same data: reduced statistics double, so the results must equal
    those of evaluating every image twice in one process (fast; no processes started)."""
    items = _make_data(tmp_path)
    doubled = _evaluate(items + items, 0, 1)
    monkeypatch.setattr(comm, "get_world_size", lambda: 2)
    monkeypatch.setattr(comm, "all_reduce", lambda t, op="sum": t.mul_(2))
    monkeypatch.setattr(comm, "gather", lambda data, dst=0, group=None: [data, data])
    _assert_same(_evaluate(items, 0, 1), doubled)


def test_process_group_of_one(tmp_path):
    items = _make_data(tmp_path)
    reference = _evaluate(items, 0, 1)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'init'}", rank=0, world_size=1)
    try:
        _assert_same(_evaluate(items, 0, 1), reference)
        t = torch.tensor([3.0])
        assert all_reduce_statistics(t) is t
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_processes_equal_single_process(tmp_path):
    items = _make_data(tmp_path)
    reference = _evaluate(items, 0, 1)
    out_file = str(tmp_path / "res.json")
    # spawn, not fork: forking a process whose thread pools are running can deadlock the children
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), items, out_file), nprocs=2, join=True)
    with open(out_file) as f:
        _assert_same(json.load(f), reference)
