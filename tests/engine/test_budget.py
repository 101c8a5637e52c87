"""engine.budget: a wall-clock budget drives the LR schedule and stops training."""
import torch
from fvcore.common.param_scheduler import CosineParamScheduler

from skinformer.engine.budget import WallClockSchedule, train_for_budget
from skinformer.engine.hooks import CallbackHook
from skinformer.engine.train_loop import SimpleTrainer
from skinformer.solver.lr_scheduler import LRMultiplier


class _Toy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(1))

    def forward(self, batch):
        return {"loss": (self.w * 0.0).sum() + self.w.sum() * 0.001}


def _loader():
    while True:
        yield [{}]


def _run(seconds_per_step, budget, nominal_max_iter=1000):
    now = [0.0]
    model = _Toy()
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    sched = LRMultiplier(opt, CosineParamScheduler(1.0, 0.0), max_iter=nominal_max_iter)
    trainer = SimpleTrainer(model, _loader(), opt)
    schedule = WallClockSchedule(sched, budget, clock=lambda: now[0])
    lrs = []

    def tick(t):
        lrs.append(opt.param_groups[0]["lr"])
        now[0] += seconds_per_step

    from skinformer.engine.hooks import LRScheduler

    trainer.register_hooks([schedule, CallbackHook(after_step=tick), LRScheduler(opt, sched)])
    return train_for_budget(trainer, schedule), lrs


def test_budget_stops_and_schedule_ends():
    iters, lrs = _run(seconds_per_step=2.0, budget=40.0)
    assert iters == 20
    # the cosine reaches its end by the budget although the nominal MAX_ITER was 1000
    assert lrs[0] == 1.0 and lrs[-1] < 0.02
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))
    # halfway through the budget, halfway through the schedule (cosine = 0.5)
    assert abs(lrs[10] - 0.5) < 0.1


def test_schedule_independent_of_machine_speed():
    slow, lrs_slow = _run(seconds_per_step=4.0, budget=40.0)
    fast, lrs_fast = _run(seconds_per_step=1.0, budget=40.0)
    assert (slow, fast) == (10, 40)
    assert abs(lrs_slow[5] - lrs_fast[20]) < 0.05  # same fraction of the budget, same lr


def test_progress_lines_give_the_time_left_and_the_loss(caplog):
    import logging

    from skinformer.engine.budget import BudgetProgress

    now = [0.0]
    model = _Toy()
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    sched = LRMultiplier(opt, CosineParamScheduler(1.0, 0.0), max_iter=100)
    trainer = SimpleTrainer(model, _loader(), opt)
    schedule = WallClockSchedule(sched, 300.0, clock=lambda: now[0])
    trainer.register_hooks([schedule, CallbackHook(after_step=lambda t: now.__setitem__(0, now[0] + 10.0)),
                            BudgetProgress(schedule, period_s=100.0)])
    with caplog.at_level(logging.INFO, logger="skinformer.engine.budget"):
        assert train_for_budget(trainer, schedule) == 30
    lines = [r.getMessage() for r in caplog.records if "of the budget" in r.getMessage()]
    # after the first step, then every 100 s of the 300 s budget
    assert len(lines) == 3, lines
    assert lines[0].startswith("iter 0 (10.00 s each): 10 / 300 s of the budget, 4:50 left, total_loss ")
    assert lines[2].startswith("iter 20 (10.00 s each): 210 / 300 s of the budget, 1:30 left")


def test_budget_trainer_averages_the_weights_with_solver_ema(tmp_path):
    """SOLVER.EMA in a budgeted run: the average is updated every step and is the trained model
    at the end (what the accuracy benchmark scores and saves)."""
    import os

    from skinformer.config import get_cfg
    from skinformer.engine.budget import build_budget_trainer
    from skinformer.engine.hooks import ModelEMA

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(root, "configs", "quickstart", "per_pixel_r18_synthetic.yaml"))
    cfg.merge_from_list(["MODEL.SEM_SEG_HEAD.CONVS_DIM", "16", "INPUT.FIXED_SIZE", "(64, 64)",
                         "SOLVER.IMS_PER_BATCH", "2", "INPUT.CROP.ENABLED", "False", "DATALOADER.NUM_WORKERS", "0",
                         "SOLVER.EMA.ENABLED", "True", "SOLVER.EMA.DECAY", "0.9", "OUTPUT_DIR", str(tmp_path)])
    trainer, schedule = build_budget_trainer(cfg, budget_s=8.0)
    ema = trainer.find_hook(ModelEMA)
    assert ema is not None
    seen = {}
    trainer.register_hooks([CallbackHook(after_step=lambda t: seen.update(
        raw=t.model.state_dict()["sem_seg_head.predictor.weight"].clone()))])
    iterations = train_for_budget(trainer, schedule)
    assert iterations >= 2 and ema.updates == iterations, iterations
    final = trainer.model.state_dict()["sem_seg_head.predictor.weight"]
    assert torch.equal(final, ema.averaged_state_dict()["sem_seg_head.predictor.weight"])
    assert not torch.equal(final, seen["raw"])
