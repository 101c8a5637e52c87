"""Training for a wall-clock budget instead of a number of iterations.

Side-by-side comparisons (``tools/benchmark_accuracy.py``) give every model the same time, not the
same number of steps. Stopping a run at the budget with an iteration-based schedule would cut it
off with a high learning rate, so the schedule is made TIME-based: :class:`WallClockSchedule`
re-estimates before every step how many iterations fit in the budget at the rate measured so far
(``iterations done / fraction of the budget used``) and sets it as the scheduler's ``max_iter``.
The LR multiplier at a step is therefore that of the fraction of the budget already used: the
config's shape (``SOLVER.LR_SCHEDULER_NAME``, warm-up fraction ``WARMUP_ITERS / MAX_ITER``) is
kept and reaches its end value when the budget runs out, whatever the machine's speed.
"""
import logging
import time
from typing import Callable, List, Optional

from skinformer.utils.events import EventStorage

from . import hooks
from .train_loop import HookBase, SimpleTrainer, TrainerBase

__all__ = ["WallClockSchedule", "BudgetProgress", "budget_progress_line", "train_for_budget", "build_budget_trainer"]

logger = logging.getLogger(__name__)


class WallClockSchedule(HookBase):
    """Drive an iteration-based :class:`~skinformer.solver.lr_scheduler.LRMultiplier` by elapsed time.

    Args:
        scheduler: the scheduler (its ``max_iter`` is updated before every step).
        budget_s: training time in seconds.
        clock: time source (injectable for tests).
    """

    def __init__(self, scheduler, budget_s: float, clock: Callable[[], float] = time.perf_counter):
        if budget_s <= 0:
            raise ValueError(f"WallClockSchedule: budget_s must be > 0, got {budget_s}")
        self.scheduler = scheduler
        self.budget_s = float(budget_s)
        self._clock = clock
        self._start: Optional[float] = None

    def before_train(self):
        """Start the budget clock."""
        self._start = self._clock()

    def elapsed(self) -> float:
        """Seconds since :meth:`before_train` (0 before training starts)."""
        return 0.0 if self._start is None else self._clock() - self._start

    def exhausted(self) -> bool:
        """Return whether the elapsed time has reached ``budget_s``."""
        return self.elapsed() >= self.budget_s

    def before_step(self):
        """Re-estimate the scheduler's ``max_iter`` from the rate so far and apply its lr to this step.

        Does nothing before the first step has been done. ``max_iter`` is at least ``iter + 1``.
        """
        done = self.trainer.iter - self.trainer.start_iter
        used = self.elapsed() / self.budget_s
        if done <= 0 or used <= 0:
            return
        # iterations that fit at the measured rate; never below the step about to run
        self.scheduler.max_iter = max(self.trainer.iter + 1, int(round(self.trainer.iter / min(used, 1.0))))
        # the lr of this step follows the new estimate now, not one step later
        for group, lr in zip(self.scheduler.optimizer.param_groups, self.scheduler.get_lr()):
            group["lr"] = lr


class BudgetProgress(HookBase):
    """Log progress under a budget every ``period_s`` seconds (and after the first step):
    iteration, time per iteration, elapsed / budget, time left (the ETA of a budgeted run) and the
    total loss (median of the iterations since the last line).

    Args:
        schedule: the run's :class:`WallClockSchedule` (its clock and budget).
        period_s: seconds between lines.
    """

    def __init__(self, schedule: WallClockSchedule, period_s: float = 60.0):
        self.schedule = schedule
        self.period_s = float(period_s)
        self._next = 0.0
        self._last_iter = 0

    def after_step(self):
        """Log a progress line (with the median ``total_loss``) after the first step and then every ``period_s``."""
        elapsed = self.schedule.elapsed()
        done = self.trainer.iter + 1 - self.trainer.start_iter
        if done > 1 and elapsed < self._next:
            return
        self._next = elapsed + self.period_s
        loss = ""
        history = self.trainer.storage.histories().get("total_loss")
        if history is not None:
            loss = f", total_loss {history.median(max(done - self._last_iter, 1)):.4f}"
        self._last_iter = done
        logger.info(budget_progress_line(self.trainer.iter, done, elapsed, self.schedule.budget_s) + loss)


def budget_progress_line(iteration: int, done: int, elapsed: float, budget_s: float) -> str:
    """``"iter I (S s each): E / B s of the budget, M:SS left"``, the progress line of every
    budgeted run (``done`` iterations took ``elapsed`` seconds)."""
    left = max(budget_s - elapsed, 0.0)
    return (f"iter {iteration} ({elapsed / max(done, 1):.2f} s each): {elapsed:.0f} / {budget_s:.0f} s of the budget, "
            f"{int(left // 60)}:{int(left % 60):02d} left")


def train_for_budget(trainer: TrainerBase, schedule: WallClockSchedule) -> int:
    """Run ``trainer`` (hooks included, ``schedule`` among them) until ``schedule`` is exhausted;
    returns the number of iterations done. The last step always starts before the budget ends."""
    trainer.iter = trainer.start_iter = 0
    with EventStorage(0) as trainer.storage:
        trainer.before_train()
        try:
            while not schedule.exhausted():
                trainer.storage.iter = trainer.iter
                trainer.before_step()
                trainer.run_step()
                trainer.after_step()
                trainer.iter += 1
            trainer.max_iter = trainer.iter
            logger.info("Budget of %.0f s used: %d iterations (%.2f s each)", schedule.budget_s, trainer.iter,
                        schedule.elapsed() / max(trainer.iter, 1))
        finally:
            trainer.after_train()
    return trainer.iter


def build_budget_trainer(cfg, budget_s: float, extra_hooks: Optional[List[HookBase]] = None,
                         progress_period_s: float = 60.0):
    """Model, optimizer, scheduler and train loader from ``cfg`` (the :class:`DefaultTrainer`
    builders) in a step trainer with only the LR hooks, the weight average of ``SOLVER.EMA`` and a
    progress line every ``progress_period_s``: no evaluation, checkpoints or writers during the budget. Returns
    ``(trainer, schedule)`` for :func:`train_for_budget`."""
    from .defaults import DefaultTrainer

    model = DefaultTrainer.build_model(cfg)
    optimizer = DefaultTrainer.build_optimizer(cfg, model)
    scheduler = DefaultTrainer.build_lr_scheduler(cfg, optimizer)
    loader = DefaultTrainer.build_train_loader(cfg)
    trainer = SimpleTrainer(model, loader, optimizer, accumulate_steps=cfg.SOLVER.ACCUMULATE_STEPS)
    schedule = WallClockSchedule(scheduler, budget_s)
    trainer.register_hooks([schedule, hooks.LRScheduler(optimizer, scheduler), hooks.build_model_ema(cfg, model),
                            BudgetProgress(schedule, progress_period_s)] + list(extra_hooks or []))
    return trainer, schedule
