"""engine.hooks.ModelEMA (SOLVER.EMA): the weight average, its use in evaluation and in the kept
files, and exact resume."""
import os

import pytest
import torch

from skinformer.engine.hooks import CallbackHook, ModelEMA, averaged_weights
from skinformer.utils.env import seed_all_rng

from engine_toy import ToyTrainer, toy_cfg, train_until_interrupted


def _weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _move(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g))


@pytest.mark.parametrize("warmup", [True, False])
def test_average_follows_the_decay(warmup):
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    ema = ModelEMA(model, decay=0.8, warmup=warmup)
    expected = None
    for t in range(1, 7):
        _move(model, t)
        model.train()(torch.randn(4, 3))  # BatchNorm statistics move too
        ema.after_step()
        # the first update copies the weights; then min(decay, 1 - t^(-2/3)) (warm-up) or decay
        decay = 0.0 if t == 1 else (min(0.8, 1 - t ** (-2 / 3)) if warmup else 0.8)
        now = _weights(model)
        expected = now if expected is None else {
            k: decay * expected[k] + (1 - decay) * now[k] if now[k].is_floating_point() else now[k] for k in now}
        got = ema.averaged_state_dict()
        for k in now:
            torch.testing.assert_close(got[k], expected[k], rtol=1e-6, atol=1e-6, msg=f"{k} after update {t}")
    assert ema.updates == 6
    assert not torch.equal(got["0.weight"], model.state_dict()["0.weight"])


def test_applied_swaps_the_average_in_and_restores_the_weights_exactly():
    model = torch.nn.Linear(4, 3)
    ema = ModelEMA(model, decay=0.5)
    for t in range(3):
        _move(model, t)
        ema.after_step()
    own = _weights(model)
    with ema.applied() as inner:
        assert inner is model
        for k, v in model.state_dict().items():
            assert torch.equal(v, ema.averaged_state_dict()[k])
            assert not torch.equal(v, own[k])
    for k, v in model.state_dict().items():
        assert torch.equal(v, own[k])


def test_decay_outside_the_unit_interval_is_refused():
    with pytest.raises(ValueError, match="SOLVER.EMA.DECAY"):
        ModelEMA(torch.nn.Linear(2, 2), decay=1.0)


class _RecordingTrainer(ToyTrainer):
    """Records the head weight each evaluation sees, and the average and raw weights of the
    evaluation steps (after ModelEMA's update, before EvalHook)."""

    seen, averages, raw = [], [], []

    @classmethod
    def test(cls, cfg, model, evaluators=None):
        cls.seen.append(model.head.weight.detach().clone())
        return {"toy": {"score": float(len(cls.seen))}}

    def build_hooks(self):
        hooks = super().build_hooks()
        i = next(i for i, h in enumerate(hooks) if isinstance(h, ModelEMA))
        ema = hooks[i]

        def record(tr):
            if (tr.iter + 1) % 4 == 0 and tr.iter + 1 < tr.max_iter:
                type(self).averages.append(ema.averaged_state_dict()["head.weight"].clone())
                type(self).raw.append(tr.model.head.weight.detach().clone())
        hooks.insert(i + 1, CallbackHook(after_step=record))
        return hooks

    @classmethod
    def reset(cls):
        cls.seen, cls.averages, cls.raw = [], [], []


def _ema_cfg(out, **kw):
    return toy_cfg(str(out), **{"SOLVER.EMA.ENABLED": True, "SOLVER.EMA.DECAY": 0.9, "TEST.EVAL_PERIOD": 4,
                                "SOLVER.MAX_ITER": 12, "SOLVER.CHECKPOINT_PERIOD": 4, **kw})


def test_trainer_evaluates_and_keeps_the_average(tmp_path):
    _RecordingTrainer.reset()
    seed_all_rng(0)
    trainer = _RecordingTrainer(_ema_cfg(tmp_path))
    ema = trainer.find_hook(ModelEMA)
    assert ema is not None
    trainer.train()
    # periodic evaluations (iterations 3 and 7) and the final one saw the average, not the raw weights
    seen = _RecordingTrainer.seen
    assert len(seen) == 3 and len(_RecordingTrainer.averages) == 2
    for got, avg, own in zip(seen, _RecordingTrainer.averages, _RecordingTrainer.raw):
        assert torch.equal(got, avg) and not torch.equal(got, own)
    final_avg = ema.averaged_state_dict()
    assert torch.equal(seen[-1], final_avg["head.weight"])
    # model_final.pth (the file users keep) holds the average; the resumable checkpoint the raw weights
    kept = torch.load(os.path.join(tmp_path, "model_final.pth"), weights_only=True)["model"]
    full = torch.load(os.path.join(tmp_path, "model_0000011.pth"), weights_only=False)
    assert torch.equal(kept["head.weight"], final_avg["head.weight"])
    assert not torch.equal(full["model"]["head.weight"], kept["head.weight"])
    assert torch.equal(full["trainer"]["hooks"]["ModelEMA"]["model"]["head.weight"], kept["head.weight"])
    # after the run the model itself holds the average (overlays, export)
    assert torch.equal(trainer.model.head.weight, final_avg["head.weight"])


def test_best_checkpoint_holds_the_evaluated_average(tmp_path):
    _RecordingTrainer.reset()
    seed_all_rng(0)
    trainer = _RecordingTrainer(_ema_cfg(tmp_path, **{"TEST.BEST_CHECKPOINT_METRIC": "toy/score"}))
    trainer.train()
    best = torch.load(os.path.join(tmp_path, "model_best.pth"), weights_only=False)
    # the score grows with every evaluation: the best is the final one
    assert torch.equal(best["model"]["head.weight"], _RecordingTrainer.seen[-1])


def test_interrupted_and_resumed_average_is_exact(tmp_path):
    seed_all_rng(0)
    straight = ToyTrainer(_ema_cfg(tmp_path / "straight"))
    straight.train()
    expected = torch.load(tmp_path / "straight" / "model_final.pth", weights_only=True)["model"]

    cfg = _ema_cfg(tmp_path / "resumed")
    seed_all_rng(0)
    first = ToyTrainer(cfg)

    train_until_interrupted(first, 6)
    seed_all_rng(0)
    second = ToyTrainer(cfg)
    second.resume_or_load(resume=True)
    assert second.start_iter == 4
    assert second.find_hook(ModelEMA).updates == 4
    second.train()
    got = torch.load(tmp_path / "resumed" / "model_final.pth", weights_only=True)["model"]
    for k in expected:
        assert torch.equal(got[k], expected[k]), k


def test_averaged_weights_without_an_average_is_a_no_op(tmp_path):
    trainer = ToyTrainer(toy_cfg(str(tmp_path)))
    before = _weights(trainer.model)
    with averaged_weights(trainer):
        pass
    with averaged_weights(None):
        pass
    for k, v in trainer.model.state_dict().items():
        assert torch.equal(v, before[k])
