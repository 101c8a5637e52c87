"""Tiny model, in-memory loader and a DefaultTrainer subclass for engine tests (CPU, fast).

Imported by the engine tests and, by module name, by the processes ``launch`` spawns.
"""
import os
from typing import Dict, List

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from skinformer.config import configurable, get_cfg
from skinformer.engine import DefaultTrainer
from skinformer.engine.hooks import CallbackHook
from skinformer.utils import comm

IN_DIM = 6


class ToyModel(nn.Module):
    """``backbone`` (Linear + LayerNorm) -> dropout -> ``head``; CE + a small L2 term.

    Dropout draws from the global torch RNG, so exact resume also checks restored RNG state.
    ``make_nan`` turns the CE term into NaN (non-finite loss tests).
    """

    @configurable
    def __init__(self, *, in_dim: int = IN_DIM, hidden: int = 16, num_classes: int = 3, dropout: float = 0.2):
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(in_dim, hidden), nn.LayerNorm(hidden), nn.ReLU())
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, num_classes)
        self.make_nan = False

    @classmethod
    def from_config(cls, cfg):
        return {"num_classes": cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES + 1}

    def forward(self, batched_inputs: List[Dict]):
        x = torch.stack([d["x"] for d in batched_inputs])
        logits = self.head(self.dropout(self.backbone(x)))
        if not self.training:
            return [{"logits": l} for l in logits]
        y = torch.tensor([d["y"] for d in batched_inputs])
        ce = F.cross_entropy(logits, y)
        if self.make_nan:
            ce = ce * float("nan")
        return {"loss_ce": ce, "loss_l2": 1e-3 * logits.pow(2).mean()}


def toy_sample(seed: int, index: int) -> Dict:
    """Sample ``index`` of the stream with seed ``seed``: a pure function (like ``_aug_seed``)."""
    g = torch.Generator().manual_seed(seed * 1000003 + index)
    x = torch.randn(IN_DIM, generator=g)
    return {"x": x, "y": int(x[:3].argmax())}


class ToyLoader:
    """Infinite in-memory loader: batch ``j`` of rank ``r`` holds samples
    ``(j * world + r) * batch_size + i``; ``state_dict`` = batches consumed (exact resume)."""

    def __init__(self, batch_size: int = 4, seed: int = 0, rank: int = 0, world_size: int = 1):
        self.batch_size, self.seed, self.rank, self.world_size = batch_size, seed, rank, world_size
        self.num_batches = 0

    def batch(self, j: int) -> List[Dict]:
        start = (j * self.world_size + self.rank) * self.batch_size
        return [toy_sample(self.seed, start + i) for i in range(self.batch_size)]

    def __iter__(self):
        while True:
            b = self.batch(self.num_batches)
            self.num_batches += 1
            yield b

    def state_dict(self):
        return {"num_batches": self.num_batches, "seed": self.seed}

    def load_state_dict(self, state):
        self.num_batches = int(state["num_batches"])
        self.seed = int(state["seed"])


class ToyTrainer(DefaultTrainer):
    """DefaultTrainer with the toy model/loader and a fake evaluation (counts calls)."""

    eval_calls: List[int] = []

    @classmethod
    def build_model(cls, cfg):
        return ToyModel(cfg)

    @classmethod
    def build_train_loader(cls, cfg):
        world = comm.get_world_size()
        return ToyLoader(cfg.SOLVER.IMS_PER_BATCH // world, seed=max(cfg.SEED, 0), rank=comm.get_rank(),
                         world_size=world)

    @classmethod
    def check_dataset_metadata(cls, cfg):
        pass

    @classmethod
    def test(cls, cfg, model, evaluators=None):
        cls.eval_calls.append(1)
        return {"toy": {"score": float(len(cls.eval_calls))}}


def toy_cfg(output_dir: str, **overrides):
    cfg = get_cfg()
    cfg.OUTPUT_DIR = output_dir
    cfg.SEED = 0
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = 2
    cfg.DATASETS.TRAIN = ()
    cfg.DATASETS.TEST = ()
    cfg.DATASETS.VALIDATE_FIRST_N = 0
    cfg.SOLVER.IMS_PER_BATCH = 4
    cfg.SOLVER.BASE_LR = 0.05
    cfg.SOLVER.MAX_ITER = 12
    cfg.SOLVER.WARMUP_ITERS = 2
    cfg.SOLVER.CHECKPOINT_PERIOD = 4
    cfg.TEST.EVAL_PERIOD = 0
    cfg.TEST.NUM_VIS = 0
    cfg.LOG_PERIOD = 1
    for k, v in overrides.items():
        node = cfg
        *parents, leaf = k.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = v
    return cfg


# ------------------------------------------------------------------------------------------
# run inside processes spawned by launch()
# ------------------------------------------------------------------------------------------
def two_process_main(output_dir: str) -> None:
    """Train the toy model for 3 iterations under DDP; each rank writes what it saw."""
    import json

    from skinformer.engine import SimpleTrainer, create_ddp_model
    from skinformer.utils.events import EventStorage

    rank, world = comm.get_rank(), comm.get_world_size()
    assert world == 2, world
    t = torch.tensor([float(rank + 1)])
    comm.all_reduce(t)
    gathered = comm.all_gather(rank)
    torch.manual_seed(0)  # identical initial weights (DDP also broadcasts them)
    model = create_ddp_model(ToyModel(num_classes=3, dropout=0.0))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    trainer = SimpleTrainer(model, ToyLoader(batch_size=2, rank=rank, world_size=world), opt)
    with EventStorage() as storage:
        for it in range(3):
            trainer.iter = storage.iter = it
            trainer.run_step()
        losses = storage.history("total_loss").values() if comm.is_main_process() else []
    checksum = float(sum(p.detach().double().sum() for p in model.parameters()))
    with open(os.path.join(output_dir, f"rank{rank}.json"), "w") as f:
        json.dump({"all_reduce": float(t.item()), "gathered": gathered, "checksum": checksum,
                   "is_ddp": type(model).__name__, "num_logged": len(losses)}, f)


def failing_main() -> None:
    if comm.get_rank() == 1:
        raise RuntimeError("boom on rank 1")
    comm.synchronize()  # rank 0 waits here until the group is torn down


def train_until_interrupted(trainer, iteration: int) -> None:
    """Train ``trainer`` until a KeyboardInterrupt before iteration ``iteration`` (a user's Ctrl-C):
    what is on disk then is what ``--resume`` gets."""
    def crash(tr):
        if tr.iter == iteration:
            raise KeyboardInterrupt

    trainer.register_hooks([CallbackHook(before_step=crash)])
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
