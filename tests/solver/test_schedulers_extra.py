"""Step / exponential / cosine-restart / one-cycle schedules against torch's own schedulers,
per iteration and per epoch; the plateau scale; RMSprop / Adagrad; errors."""
import pytest
import torch

from skinformer.config import get_cfg
from skinformer.solver import build_lr_scheduler, build_optimizer


def _cfg(**kw):
    cfg = get_cfg()
    cfg.SOLVER.BASE_LR = 0.1
    cfg.SOLVER.MAX_ITER = 60
    cfg.SOLVER.WARMUP_ITERS = 0
    for k, v in kw.items():
        node = cfg.SOLVER
        *parents, leaf = k.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = v
    return cfg


def _ours(cfg, iters_per_epoch=None):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=cfg.SOLVER.BASE_LR)
    sched = build_lr_scheduler(cfg, opt, iters_per_epoch=iters_per_epoch)
    out = []
    for _ in range(cfg.SOLVER.MAX_ITER):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def _torch(make, n, every=1):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1)
    sched = make(opt)
    out = []
    for i in range(n):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        if (i + 1) % every == 0:
            sched.step()
    return out


def test_step_lr_per_iteration_and_per_epoch():
    ours = _ours(_cfg(LR_SCHEDULER_NAME="WarmupStepLR", STEP_SIZE=5, GAMMA=0.95))
    ref = _torch(lambda o: torch.optim.lr_scheduler.StepLR(o, 5, 0.95), 60)
    assert ours == pytest.approx(ref, rel=1e-9)
    # per epoch of 7 iterations: torch stepped once per epoch
    ours = _ours(_cfg(LR_SCHEDULER_NAME="WarmupStepLR", STEP_SIZE=2, GAMMA=0.1, SCHEDULER_STEP_UNIT="epoch"), 7)
    ref = _torch(lambda o: torch.optim.lr_scheduler.StepLR(o, 2, 0.1), 60, every=7)
    assert ours == pytest.approx(ref, rel=1e-9)


def test_exponential_lr():
    ours = _ours(_cfg(LR_SCHEDULER_NAME="WarmupExponentialLR", GAMMA=0.95, SCHEDULER_STEP_UNIT="epoch"), 4)
    ref = _torch(lambda o: torch.optim.lr_scheduler.ExponentialLR(o, 0.95), 60, every=4)
    assert ours == pytest.approx(ref, rel=1e-9)


def test_cosine_restart_lr():
    cfg = _cfg(LR_SCHEDULER_NAME="WarmupCosineRestartLR", BASE_LR_END=1e-3, **{"COSINE_RESTART.T_0": 5,
                                                                              "COSINE_RESTART.T_MULT": 2})
    ref = _torch(lambda o: torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(o, 5, 2, eta_min=1e-3), 60)
    assert _ours(cfg) == pytest.approx(ref, rel=1e-6)


@pytest.mark.parametrize("pct", [0.3, 0.25])
def test_one_cycle_lr(pct):
    cfg = _cfg(LR_SCHEDULER_NAME="OneCycleLR", **{"ONE_CYCLE.PCT_START": pct, "ONE_CYCLE.CYCLE_MOMENTUM": False})
    ref = _torch(lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.1, total_steps=60, pct_start=pct,
                                                                cycle_momentum=False), 60)
    assert _ours(cfg) == pytest.approx(ref, rel=1e-6)


@pytest.mark.parametrize("opt_name", ["SGD", "ADAM"])
def test_one_cycle_momentum_matches_torch(opt_name):
    cfg = _cfg(LR_SCHEDULER_NAME="OneCycleLR", OPTIMIZER=opt_name, **{"ONE_CYCLE.CYCLE_MOMENTUM": True})
    model = torch.nn.Linear(2, 1)
    ref_model = torch.nn.Linear(2, 1)
    opt = build_optimizer(cfg, model)
    sched = build_lr_scheduler(cfg, opt)
    ref_opt = (torch.optim.SGD(ref_model.parameters(), lr=0.1, momentum=0.9) if opt_name == "SGD"
               else torch.optim.Adam(ref_model.parameters(), lr=0.1))
    ref = torch.optim.lr_scheduler.OneCycleLR(ref_opt, max_lr=0.1, total_steps=60)
    key = "momentum" if opt_name == "SGD" else "betas"
    for _ in range(59):
        got, want = opt.param_groups[0][key], ref_opt.param_groups[0][key]
        assert got == pytest.approx(want, rel=1e-9)
        assert opt.param_groups[0]["lr"] == pytest.approx(ref_opt.param_groups[0]["lr"], rel=1e-6)
        opt.step()
        ref_opt.step()
        sched.step()
        ref.step()


def test_warmup_wraps_step_schedules():
    lr = _ours(_cfg(LR_SCHEDULER_NAME="WarmupExponentialLR", GAMMA=0.9, WARMUP_ITERS=10, WARMUP_FACTOR=0.01))
    assert lr[0] == pytest.approx(0.001) and lr[10] == pytest.approx(0.1 * 0.9 ** 10)


def test_plateau_scale_and_state():
    cfg = _cfg(LR_SCHEDULER_NAME="ReduceLROnPlateau", **{"PLATEAU.METRIC": "x/y"})
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1)
    sched = build_lr_scheduler(cfg, opt)
    opt.step()
    sched.step()
    sched.reduce(0.5)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05)
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05)
    sched.reduce(1e-6, min_lr=1e-3)
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-3)
    state = sched.state_dict()
    opt2 = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    s2 = build_lr_scheduler(cfg, opt2)
    s2.load_state_dict(state)
    assert s2.scale == sched.scale and s2.min_lr == 1e-3
    opt2.step()
    s2.step()
    assert opt2.param_groups[0]["lr"] == pytest.approx(1e-3)
    with pytest.raises(ValueError, match="SOLVER.PLATEAU.METRIC"):
        build_lr_scheduler(_cfg(LR_SCHEDULER_NAME="ReduceLROnPlateau"), opt)


def test_bad_unit_and_step_size():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ValueError, match="SCHEDULER_STEP_UNIT"):
        build_lr_scheduler(_cfg(LR_SCHEDULER_NAME="WarmupStepLR", SCHEDULER_STEP_UNIT="week"), opt)
    with pytest.raises(ValueError, match="STEP_SIZE"):
        build_lr_scheduler(_cfg(LR_SCHEDULER_NAME="WarmupStepLR", STEP_SIZE=0), opt)


@pytest.mark.parametrize("name,cls", [("RMSPROP", torch.optim.RMSprop), ("ADAGRAD", torch.optim.Adagrad)])
def test_rmsprop_and_adagrad(name, cls):
    cfg = get_cfg()
    cfg.SOLVER.OPTIMIZER = name
    cfg.SOLVER.BASE_LR = 0.01
    cfg.SOLVER.WEIGHT_DECAY = 1e-8
    model = torch.nn.Linear(3, 2)
    opt = build_optimizer(cfg, model)
    assert isinstance(opt, cls)
    # one step equals torch's optimizer with the same hyper-parameters
    ref_model = torch.nn.Linear(3, 2)
    ref_model.load_state_dict(model.state_dict())
    kw = {"momentum": 0.9, "alpha": 0.99} if name == "RMSPROP" else {}
    ref = cls(ref_model.parameters(), lr=0.01, weight_decay=1e-8, eps=1e-8, **kw)
    x = torch.randn(4, 3)
    for m, o in ((model, opt), (ref_model, ref)):
        for _ in range(3):
            o.zero_grad()
            m(x).pow(2).sum().backward()
            o.step()
    for a, b in zip(model.parameters(), ref_model.parameters()):
        torch.testing.assert_close(a, b)
