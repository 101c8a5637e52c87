"""LR schedules at known iterations (warmup, steps, cosine end, poly) and their errors."""
import math

import pytest
import torch

from skinformer.config import get_cfg
from skinformer.solver import build_lr_scheduler


def _lrs(**kw):
    cfg = get_cfg()
    cfg.SOLVER.BASE_LR = 1.0
    cfg.SOLVER.MAX_ITER = 100
    cfg.SOLVER.WARMUP_ITERS = 0
    for k, v in kw.items():
        setattr(cfg.SOLVER, k, v)
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = build_lr_scheduler(cfg, opt)
    out = []
    for _ in range(cfg.SOLVER.MAX_ITER + 1):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_multistep_with_linear_warmup():
    lr = _lrs(LR_SCHEDULER_NAME="WarmupMultiStepLR", STEPS=(30, 60), GAMMA=0.1, WARMUP_ITERS=10,
              WARMUP_FACTOR=0.001, WARMUP_METHOD="linear")
    assert lr[0] == pytest.approx(0.001)
    assert lr[5] == pytest.approx(0.001 + 0.999 * 0.5)
    assert lr[10] == pytest.approx(1.0) and lr[29] == pytest.approx(1.0)
    assert lr[30] == pytest.approx(0.1) and lr[59] == pytest.approx(0.1)
    assert lr[60] == pytest.approx(0.01) and lr[99] == pytest.approx(0.01)


def test_constant_warmup():
    lr = _lrs(LR_SCHEDULER_NAME="WarmupMultiStepLR", STEPS=(50,), WARMUP_ITERS=10, WARMUP_FACTOR=0.1,
              WARMUP_METHOD="constant")
    assert lr[0] == pytest.approx(0.1) and lr[9] == pytest.approx(0.1) and lr[10] == pytest.approx(1.0)


def test_cosine_end():
    lr = _lrs(LR_SCHEDULER_NAME="WarmupCosineLR", BASE_LR_END=0.01)
    assert lr[0] == pytest.approx(1.0)
    assert lr[50] == pytest.approx(0.01 + 0.99 * 0.5)
    assert lr[100] == pytest.approx(0.01)


def test_poly_and_constant_ending():
    lr = _lrs(LR_SCHEDULER_NAME="WarmupPolyLR", POLY_LR_POWER=0.9)
    assert lr[0] == pytest.approx(1.0)
    assert lr[50] == pytest.approx(0.5 ** 0.9)
    assert lr[90] == pytest.approx(0.1 ** 0.9)
    lr = _lrs(LR_SCHEDULER_NAME="WarmupPolyLR", POLY_LR_POWER=1.0, POLY_LR_CONSTANT_ENDING=0.2)
    assert lr[50] == pytest.approx(0.5) and lr[95] == pytest.approx(0.2)


def test_steps_beyond_max_iter_ignored():
    lr = _lrs(LR_SCHEDULER_NAME="WarmupMultiStepLR", STEPS=(50, 500))
    assert lr[49] == 1.0 and lr[50] == pytest.approx(0.1) and lr[99] == pytest.approx(0.1)


def test_state_dict_roundtrip_continues_schedule():
    cfg = get_cfg()
    cfg.SOLVER.BASE_LR, cfg.SOLVER.MAX_ITER, cfg.SOLVER.WARMUP_ITERS = 1.0, 100, 0
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    s = build_lr_scheduler(cfg, opt)
    for _ in range(40):
        opt.step()
        s.step()
    state = s.state_dict()
    opt2 = torch.optim.SGD([p], lr=1.0)
    s2 = build_lr_scheduler(cfg, opt2)
    s2.load_state_dict(state)
    opt2.step()
    s2.step()
    assert opt2.param_groups[0]["lr"] == pytest.approx((1 - 41 / 100) ** 0.9)
    assert math.isfinite(opt2.param_groups[0]["lr"])


@pytest.mark.parametrize("key,value,match", [
    ("LR_SCHEDULER_NAME", "OneCycle", r"WarmupCosineLR.*WarmupMultiStepLR.*WarmupPolyLR"),
    ("WARMUP_METHOD", "exp", "WARMUP_METHOD"),
])
def test_bad_names(key, value, match):
    with pytest.raises(ValueError, match=match):
        _lrs(**{key: value, "WARMUP_ITERS": 5})


def test_warmup_longer_than_training_is_clamped_with_a_warning(caplog):
    # detectron2's behaviour: a short run of a shipped recipe needs no extra override
    with caplog.at_level("WARNING", logger="skinformer.solver.build"):
        lr = _lrs(LR_SCHEDULER_NAME="WarmupMultiStepLR", STEPS=(), WARMUP_ITERS=500, WARMUP_FACTOR=0.01)
    assert "SOLVER.WARMUP_ITERS (500) >= SOLVER.MAX_ITER (100): warmup clamped to 99" in caplog.text
    assert lr[0] == pytest.approx(0.01)
    assert all(b > a for a, b in zip(lr[:99], lr[1:99]))  # warming up over the whole run
    assert lr[99] == pytest.approx(1.0)
