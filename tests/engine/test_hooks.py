"""Hooks: EvalHook schedule, BestCheckpointer, PeriodicCheckpointer, LRScheduler, writer; the
DefaultTrainer hook list and its outputs."""
import json
import math
import os

import pytest
import torch

from engine_toy import ToyModel, ToyTrainer, toy_cfg, toy_sample
from skinformer.checkpoint import DetectionCheckpointer
from skinformer.engine import TrainerBase, hooks


class _Noop(TrainerBase):
    def run_step(self):
        pass


def _run(hook_list, max_iter, start_iter=0):
    t = _Noop()
    t.register_hooks(hook_list)
    t.train(start_iter, max_iter)
    return t


def test_eval_hook_period_start_iter_and_final():
    at = []
    trainer_ref = {}

    def fn():
        at.append(trainer_ref["t"].iter)
        return {"task": {"m": 1.0}}

    t = _Noop()
    trainer_ref["t"] = t
    h = hooks.EvalHook(3, fn, eval_start_iter=5)
    t.register_hooks([h])
    t.train(0, 10)
    # periodic at next_iter 6 and 9 (3 is before EVAL_START_ITER), final after training
    assert at == [5, 8, 10]
    assert t.storage.latest()["task/m"] == (1.0, 10)


def test_eval_hook_not_doubled_at_max_iter_and_period_zero():
    at = []
    _run([hooks.EvalHook(5, lambda: at.append(1) or {})], 10)
    assert len(at) == 2  # iteration 5 + final (not also at 10)
    at.clear()
    _run([hooks.EvalHook(0, lambda: at.append(1) or {})], 10)
    assert len(at) == 1  # only the final one


def test_eval_hook_rejects_non_float_results():
    with pytest.raises(ValueError, match="nested dict of floats"):
        _run([hooks.EvalHook(0, lambda: {"task": {"m": "bad"}})], 2)


def test_eval_hook_preserves_rng():
    def noisy():
        torch.rand(100)  # evaluation consuming random numbers must not shift training's stream
        return {}

    torch.manual_seed(0)
    expected = torch.rand(5)
    torch.manual_seed(0)
    _run([hooks.EvalHook(1, noisy)], 3)
    assert torch.equal(torch.rand(5), expected)


class _FakeCkpt:
    def __init__(self):
        self.saved = []

    def save(self, name, **kwargs):
        self.saved.append((name, kwargs.get("iteration"), kwargs.get("tag_last_checkpoint")))


def _best_run(values, mode):
    ckpt = _FakeCkpt()
    it = iter(values)
    t = _Noop()
    best = hooks.BestCheckpointer(2, ckpt, "sem_seg/mIoU", mode=mode)
    t.register_hooks([hooks.EvalHook(2, lambda: {"sem_seg": {"mIoU": next(it)}}), best])
    t.train(0, 2 * len(values) - 1 if len(values) > 1 else 1)
    return ckpt.saved, best


@pytest.mark.parametrize("mode,values,expected_iters,best", [
    ("max", [0.5, float("nan"), 0.7, 0.6], [1, 5], 0.7),
    ("min", [0.5, float("nan"), 0.7, 0.4], [1, 7], 0.4),
])
def test_best_checkpointer_modes_and_nan(mode, values, expected_iters, best):
    saved, hook = _best_run(values, mode)
    assert [s[1] for s in saved] == expected_iters
    assert all(s[0] == "model_best" and s[2] is False for s in saved)  # last_checkpoint untouched
    assert hook.best_metric == pytest.approx(best)
    assert hook.state_dict()["best_metric"] == pytest.approx(best)


def test_best_checkpointer_all_nan_never_saves():
    saved, hook = _best_run([float("nan"), float("nan")], "max")
    assert saved == [] and hook.best_metric is None


def test_best_checkpointer_bad_mode():
    with pytest.raises(ValueError, match="BEST_CHECKPOINT_MODE"):
        hooks.BestCheckpointer(1, _FakeCkpt(), "x", mode="largest")


def test_lr_scheduler_hook_logs_lr_and_steps():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda it: 1.0 / (it + 1))
    class _Stepping(TrainerBase):
        def run_step(self):
            opt.step()

    t = _Stepping()
    t.optimizer, t.scheduler = opt, sched
    t.register_hooks([hooks.LRScheduler()])
    t.train(0, 3)
    assert [v for v, _ in t.storage.history("lr").values()] == [1.0, 0.5, pytest.approx(1 / 3)]


def test_periodic_checkpointer_files(tmp_path):
    model = ToyModel()
    opt = torch.optim.Adam(model.parameters())
    model([toy_sample(0, i) for i in range(4)])["loss_ce"].backward()
    opt.step()  # Adam state: twice the model's size
    ckpt = DetectionCheckpointer(model, str(tmp_path), optimizer=opt)
    _run([hooks.PeriodicCheckpointer(ckpt, 3)], 7)
    names = sorted(os.listdir(tmp_path))
    assert names == ["last_checkpoint", "model_0000002.pth", "model_0000005.pth", "model_0000006.pth",
                     "model_final.pth"]
    # --resume continues from the full checkpoint of the last iteration ...
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000006.pth"
    full = torch.load(tmp_path / "model_0000006.pth", weights_only=True)
    assert "optimizer" in full and full["iteration"] == 6
    # ... while model_final.pth holds the same weights and nothing else
    final = torch.load(tmp_path / "model_final.pth", weights_only=True)
    assert set(final) == {"model", "iteration", "__skinformer_format__"}
    assert all(torch.equal(final["model"][k], full["model"][k]) for k in full["model"])
    assert os.path.getsize(tmp_path / "model_final.pth") < os.path.getsize(tmp_path / "model_0000006.pth")


def test_periodic_checkpointer_final_not_written_twice(tmp_path):
    # the last iteration is also a periodic one: one full checkpoint, one weights-only file
    ckpt = DetectionCheckpointer(ToyModel(), str(tmp_path))
    _run([hooks.PeriodicCheckpointer(ckpt, 3)], 6)
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_0000002.pth", "model_0000005.pth",
                                            "model_final.pth"]


def test_default_trainer_outputs_and_hook_order(tmp_path):
    ToyTrainer.eval_calls = []
    cfg = toy_cfg(str(tmp_path), **{"SOLVER.MAX_ITER": 8, "SOLVER.CHECKPOINT_PERIOD": 4, "TEST.EVAL_PERIOD": 4,
                                   "TEST.EVAL_START_ITER": 0, "TEST.BEST_CHECKPOINT_METRIC": "toy/score",
                                   "LOG_PERIOD": 2})
    trainer = ToyTrainer(cfg)
    assert [type(h).__name__ for h in trainer._hooks] == [
        "IterationTimer", "LRScheduler", "PeriodicCheckpointer", "EvalHook", "BestCheckpointer", "PeriodicWriter"]
    results = trainer.train()
    assert results == {"toy": {"score": 2.0}}
    assert len(ToyTrainer.eval_calls) == 2  # at iteration 4 and the final one
    for f in ("model_0000003.pth", "model_0000007.pth", "model_final.pth", "model_best.pth", "last_checkpoint",
              "metrics.json"):
        assert (tmp_path / f).exists(), f
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000007.pth"
    lines = [json.loads(l) for l in (tmp_path / "metrics.json").read_text().splitlines()]
    iters = [l["iteration"] for l in lines]
    assert iters == [1, 3, 5, 7, 8]  # every LOG_PERIOD, plus the final evaluation line
    assert lines[1]["toy/score"] == 1.0 and lines[-1]["toy/score"] == 2.0
    assert all(math.isfinite(l["total_loss"]) for l in lines[:-1])
    assert "lr" in lines[0]
