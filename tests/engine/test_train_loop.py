"""SimpleTrainer / AMPTrainer / TrainerBase behaviour on a tiny model (CPU)."""
import copy
import math
import os

import pytest
import torch

from engine_toy import ToyLoader, ToyModel, ToyTrainer, toy_cfg, toy_sample, train_until_interrupted
from skinformer.checkpoint import DetectionCheckpointer
from skinformer.engine import AMPTrainer, HookBase, SimpleTrainer, TrainerBase
from skinformer.engine.hooks import CallbackHook
from skinformer.utils.env import seed_all_rng
from skinformer.utils.events import EventStorage


class _ListLoader:
    def __init__(self, batches):
        self.batches = batches

    def __iter__(self):
        while True:
            yield from self.batches


def _grads(model):
    return [p.grad.detach().clone() for p in model.parameters()]


def test_simple_trainer_trains_and_logs():
    torch.manual_seed(0)
    model = ToyModel(num_classes=3, dropout=0.0)
    before = copy.deepcopy(model.state_dict())
    trainer = SimpleTrainer(model, ToyLoader(batch_size=4), torch.optim.SGD(model.parameters(), lr=0.1))
    trainer.train(0, 5)
    assert trainer.iter == 5  # bumped past the last iteration on success
    hist = trainer.storage.history("total_loss").values()
    assert [it for _, it in hist] == [0, 1, 2, 3, 4]
    for k in ("loss_ce", "loss_l2", "data_time"):
        assert k in trainer.storage.latest()
    assert not torch.equal(before["head.weight"], model.state_dict()["head.weight"])


def test_hook_call_order_and_counts():
    calls = []

    class Recorder(HookBase):
        def before_train(self):
            calls.append("before_train")

        def before_step(self):
            calls.append(f"before_step{self.trainer.iter}")

        def after_backward(self):
            calls.append("after_backward")

        def after_step(self):
            calls.append(f"after_step{self.trainer.iter}")

        def after_train(self):
            calls.append("after_train")

    model = ToyModel()
    trainer = SimpleTrainer(model, ToyLoader(), torch.optim.SGD(model.parameters(), lr=0.1))
    trainer.register_hooks([Recorder(), None])
    trainer.train(0, 2)
    assert calls == ["before_train", "before_step0", "after_backward", "after_step0",
                     "before_step1", "after_backward", "after_step1", "after_train"]


def test_after_train_runs_on_exception_and_iter_not_bumped():
    seen = {}

    class Boom(TrainerBase):
        def run_step(self):
            if self.iter == 2:
                raise RuntimeError("boom")

    t = Boom()
    t.register_hooks([CallbackHook(after_train=lambda tr: seen.setdefault("iter", tr.iter))])
    with pytest.raises(RuntimeError, match="boom"):
        t.train(0, 5)
    assert seen["iter"] == 2  # not max_iter: hooks can tell a crash from success


def test_accumulation_equals_bigger_batch():
    samples = [toy_sample(3, i) for i in range(4)]
    torch.manual_seed(0)
    m_acc = ToyModel(num_classes=3, dropout=0.0)
    m_big = copy.deepcopy(m_acc)
    t_acc = SimpleTrainer(m_acc, _ListLoader([samples[:2], samples[2:]]),
                          torch.optim.SGD(m_acc.parameters(), lr=0.0), accumulate_steps=2)
    t_big = SimpleTrainer(m_big, _ListLoader([samples]), torch.optim.SGD(m_big.parameters(), lr=0.0))
    with EventStorage():
        t_acc.run_step()
        t_big.run_step()
    for ga, gb in zip(_grads(m_acc), _grads(m_big)):
        torch.testing.assert_close(ga, gb, rtol=1e-5, atol=1e-7)
    # and the same optimizer step when lr > 0
    for t in (t_acc, t_big):
        t.optimizer.param_groups[0]["lr"] = 0.1
    with EventStorage():
        t_acc.run_step()
        t_big.run_step()
    for pa, pb in zip(m_acc.parameters(), m_big.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6)


def test_accumulation_rejects_zero():
    m = ToyModel()
    with pytest.raises(ValueError, match="ACCUMULATE_STEPS"):
        SimpleTrainer(m, ToyLoader(), torch.optim.SGD(m.parameters(), lr=0.1), accumulate_steps=0)


def test_non_finite_loss_names_iteration_and_terms_and_skips_step():
    model = ToyModel(dropout=0.0)
    trainer = SimpleTrainer(model, ToyLoader(), torch.optim.SGD(model.parameters(), lr=0.1))
    snapshot = {}

    def arm(tr):
        if tr.iter == 3:
            snapshot.update({k: v.clone() for k, v in model.state_dict().items()})
            model.make_nan = True

    trainer.register_hooks([CallbackHook(before_step=arm)])
    with pytest.raises(FloatingPointError) as e:
        trainer.train(0, 10)
    msg = str(e.value)
    assert "iteration=3" in msg and "loss_ce=nan" in msg and "loss_l2=" in msg
    # the optimizer step was not taken: weights are those before the bad iteration
    for k, v in model.state_dict().items():
        assert torch.equal(v, snapshot[k]), k


def test_non_finite_loss_keeps_last_checkpoint(tmp_path):
    ToyTrainer.eval_calls = []
    cfg = toy_cfg(str(tmp_path), **{"SOLVER.MAX_ITER": 10, "SOLVER.CHECKPOINT_PERIOD": 3})
    trainer = ToyTrainer(cfg)
    trainer.register_hooks([CallbackHook(before_step=lambda tr: setattr(tr.model, "make_nan", tr.iter == 7))])
    with pytest.raises(FloatingPointError, match="iteration=7"):
        trainer.train()
    ckpt = DetectionCheckpointer(ToyModel(cfg), str(tmp_path))
    assert os.path.basename(ckpt.get_checkpoint_file()) == "model_0000005.pth"
    assert not (tmp_path / "model_final.pth").exists()
    extra = ckpt.load(ckpt.get_checkpoint_file())
    assert extra["iteration"] == 5
    assert all(torch.isfinite(p).all() for p in ckpt.model.parameters())
    assert ToyTrainer.eval_calls == []  # no final evaluation after a crash


def test_amp_trainer_bfloat16_cpu_and_state():
    model = ToyModel(dropout=0.0)
    trainer = AMPTrainer(model, ToyLoader(), torch.optim.SGD(model.parameters(), lr=0.1), precision="bfloat16")
    assert trainer.grad_scaler is None  # bf16 and CPU need no scaler
    trainer.train(0, 3)
    assert math.isfinite(trainer.storage.history("total_loss").latest())
    assert "grad_scaler" not in trainer.state_dict()
    with pytest.raises(ValueError, match="SOLVER.AMP.DTYPE"):
        AMPTrainer(model, ToyLoader(), trainer.optimizer, precision="float8")


def test_model_must_return_losses():
    class Bad(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(1))

        def forward(self, x):
            return [self.w]

    m = Bad()
    t = SimpleTrainer(m, ToyLoader(), torch.optim.SGD(m.parameters(), lr=0.1))
    with EventStorage(), pytest.raises(TypeError, match="dict of scalar losses"):
        t.run_step()


def _run_losses(trainer):
    losses = {}
    trainer.register_hooks([CallbackHook(
        after_step=lambda tr: losses.__setitem__(tr.iter, tr.storage.latest()["total_loss"][0]))])
    trainer.train()
    return losses


def test_exact_resume_same_losses(tmp_path):
    """k iterations, crash, resume to n == n iterations straight (model, Adam, poly LR with
    warmup, data position, dropout RNG)."""
    n = 12
    ToyTrainer.eval_calls = []
    seed_all_rng(0)
    straight = _run_losses(ToyTrainer(toy_cfg(str(tmp_path / "a"), **{"SOLVER.MAX_ITER": n})))

    seed_all_rng(0)
    first = ToyTrainer(toy_cfg(str(tmp_path / "b"), **{"SOLVER.MAX_ITER": n}))

    train_until_interrupted(first, 6)  # after the checkpoint of iteration 3, before the one of 7

    seed_all_rng(12345)  # a different seed: the RNG state must come from the checkpoint
    resumed = ToyTrainer(toy_cfg(str(tmp_path / "b"), **{"SOLVER.MAX_ITER": n}))
    resumed.resume_or_load(resume=True)
    assert resumed.start_iter == 4
    after = _run_losses(resumed)
    assert sorted(after) == list(range(4, n))
    for it in range(4, n):
        assert after[it] == straight[it], (it, after[it], straight[it])
    # final weights identical too
    a = torch.load(tmp_path / "a" / "model_final.pth", weights_only=True)["model"]
    b = torch.load(tmp_path / "b" / "model_final.pth", weights_only=True)["model"]
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_resume_without_checkpoint_starts_at_zero(tmp_path):
    t = ToyTrainer(toy_cfg(str(tmp_path)))
    t.resume_or_load(resume=True)
    assert t.start_iter == 0
