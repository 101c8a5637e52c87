"""Learning-rate schedules as fvcore param schedulers, applied per iteration.

A schedule is a multiplier ``m(where)`` of each param group's base lr, with
``where = iteration / MAX_ITER`` in ``[0, 1]``. :class:`LRMultiplier` turns it into a torch
``LRScheduler`` stepped once per iteration (by the ``LRScheduler`` hook). Warmup wraps any
schedule: linear from ``WARMUP_FACTOR × m(0)`` to ``m(warmup_end)`` (or constant).
"""
import math
from typing import Callable, List, Optional

import torch
from fvcore.common.param_scheduler import (
    CompositeParamScheduler,
    ConstantParamScheduler,
    LinearParamScheduler,
    ParamScheduler,
)

__all__ = [
    "ConstantMultiplier", "WarmupParamScheduler", "PolyParamScheduler", "LRMultiplier", "UnitParamScheduler", "StepParamScheduler",
    "ExponentialParamScheduler", "CosineRestartParamScheduler", "OneCycleParamScheduler",
]


class PolyParamScheduler(ParamScheduler):
    """``(1 - where) ** power``, floored at ``constant_ending`` when that is > 0 (DeepLab's
    WarmupPolyLR ending)."""

    def __init__(self, power: float = 0.9, constant_ending: float = 0.0):
        self._power = power
        self._constant_ending = constant_ending

    def __call__(self, where: float) -> float:
        value = (1.0 - where) ** self._power
        if self._constant_ending > 0 and value < self._constant_ending:
            return self._constant_ending
        return value


class ConstantMultiplier(ParamScheduler):
    """Always 1 (fvcore's constant scheduler rejects ``where == 1``, the value after the last step);
    the schedule of ``ReduceLROnPlateau`` before any reduction."""

    def __call__(self, where: float) -> float:
        return 1.0


class UnitParamScheduler(ParamScheduler):
    """A schedule of whole *steps* of ``unit_iters`` iterations (1: per iteration; the epoch
    length: per epoch, constant within an epoch, like a torch scheduler stepped once per epoch).

    ``where`` is turned back into the iteration ``round(where × max_iter)``; subclasses define
    :meth:`value` of ``(step, total_steps)``. Stateless: a resumed run gets the same values.
    """

    def __init__(self, max_iter: int, unit_iters: int = 1):
        if max_iter <= 0 or unit_iters <= 0:
            raise ValueError(f"max_iter ({max_iter}) and the step unit ({unit_iters} iterations) must be > 0")
        self._max_iter = int(max_iter)
        self._unit = int(unit_iters)

    def __call__(self, where: float) -> float:
        iteration = int(round(where * self._max_iter))
        return self.value(iteration // self._unit, math.ceil(self._max_iter / self._unit))

    def value(self, step: int, total_steps: int) -> float:
        """Return the multiplier at 0-based step ``step`` of ``total_steps``; implemented by subclasses."""
        raise NotImplementedError


class StepParamScheduler(UnitParamScheduler):
    """``gamma ** (step // step_size)`` (torch ``StepLR``)."""

    def __init__(self, max_iter: int, step_size: int, gamma: float, unit_iters: int = 1):
        super().__init__(max_iter, unit_iters)
        if step_size <= 0:
            raise ValueError(f"SOLVER.STEP_SIZE must be > 0, got {step_size}")
        self._step_size = int(step_size)
        self._gamma = float(gamma)

    def value(self, step, total_steps):
        """Return ``gamma ** (step // step_size)``."""
        return self._gamma ** (step // self._step_size)


class ExponentialParamScheduler(UnitParamScheduler):
    """``gamma ** step`` (torch ``ExponentialLR``)."""

    def __init__(self, max_iter: int, gamma: float, unit_iters: int = 1):
        super().__init__(max_iter, unit_iters)
        self._gamma = float(gamma)

    def value(self, step, total_steps):
        """Return ``gamma ** step``."""
        return self._gamma ** step


class CosineRestartParamScheduler(UnitParamScheduler):
    """SGDR (torch ``CosineAnnealingWarmRestarts``): cosine from 1 to ``end_value`` over ``t_0``
    steps, then restarts with periods multiplied by ``t_mult``."""

    def __init__(self, max_iter: int, t_0: int, t_mult: int = 1, end_value: float = 0.0, unit_iters: int = 1):
        super().__init__(max_iter, unit_iters)
        if t_0 <= 0 or t_mult < 1 or int(t_mult) != t_mult:
            raise ValueError(f"SOLVER.COSINE_RESTART: T_0 must be > 0 and T_MULT an integer >= 1, got {t_0}, {t_mult}")
        self._t_0, self._t_mult, self._end = int(t_0), int(t_mult), float(end_value)

    def value(self, step, total_steps):
        """Return the cosine value at ``step`` within its current restart period."""
        t_cur, t_i = step, self._t_0
        while t_cur >= t_i:
            t_cur -= t_i
            t_i *= self._t_mult
        return self._end + (1.0 - self._end) * (1 + math.cos(math.pi * t_cur / t_i)) / 2


class OneCycleParamScheduler(UnitParamScheduler):
    """torch ``OneCycleLR`` (two phases, cosine annealing) relative to the peak: from
    ``1 / div_factor`` up to 1 over ``pct_start`` of the steps, then down to
    ``1 / (div_factor × final_div_factor)``. The base lr is the peak (``max_lr``)."""

    def __init__(self, max_iter: int, pct_start: float = 0.3, div_factor: float = 25.0,
                 final_div_factor: float = 1e4, unit_iters: int = 1, base_momentum: float = 0.85,
                 max_momentum: float = 0.95):
        super().__init__(max_iter, unit_iters)
        if not 0.0 < pct_start < 1.0:
            raise ValueError(f"SOLVER.ONE_CYCLE.PCT_START must be in (0, 1), got {pct_start}")
        self._pct, self._start = float(pct_start), 1.0 / float(div_factor)
        self._min = self._start / float(final_div_factor)
        self._base_m, self._max_m = float(base_momentum), float(max_momentum)

    @staticmethod
    def _anneal(start: float, end: float, pct: float) -> float:
        return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)

    def _phase(self, step: int, total_steps: int):
        """(True for the rising phase, fraction of that phase done)."""
        up_end = float(self._pct * total_steps) - 1
        down_end = float(total_steps - 1)
        if step <= up_end:
            return True, step / up_end if up_end > 0 else 1.0
        return False, (min(step, down_end) - up_end) / (down_end - up_end)

    def value(self, step, total_steps):
        """Return the cosine-annealed multiplier of the rising or falling phase that ``step`` is in."""
        up, pct = self._phase(step, total_steps)
        return self._anneal(self._start, 1.0, pct) if up else self._anneal(1.0, self._min, pct)

    def momentum(self, where: float) -> float:
        """Momentum (SGD / RMSprop) or beta1 (Adam) cycled inversely to the lr, as torch does."""
        iteration = int(round(where * self._max_iter))
        up, pct = self._phase(iteration // self._unit, math.ceil(self._max_iter / self._unit))
        return self._anneal(self._max_m, self._base_m, pct) if up else self._anneal(self._base_m, self._max_m, pct)


def _linear_warmup(start: float, end: float) -> ParamScheduler:
    return LinearParamScheduler(start, end)


def _constant_warmup(start: float, end: float) -> ParamScheduler:
    return ConstantParamScheduler(start)


_WARMUP_METHODS = {"linear": _linear_warmup, "constant": _constant_warmup}


class WarmupParamScheduler(CompositeParamScheduler):
    """Prepend a warmup of relative length ``warmup_length`` to ``scheduler``.

    During warmup the value goes from ``warmup_factor × scheduler(0)`` to
    ``scheduler(warmup_length)`` (linear) or stays at the start value (constant); afterwards
    ``scheduler`` is evaluated at the *global* ``where`` (not rescaled), as in detectron2.
    """

    def __init__(self, scheduler: ParamScheduler, warmup_factor: float, warmup_length: float,
                 warmup_method: str = "linear", rescale_interval: bool = False):
        if warmup_method not in _WARMUP_METHODS:
            raise ValueError(
                f"SOLVER.WARMUP_METHOD must be one of {sorted(_WARMUP_METHODS)}, got '{warmup_method}'"
            )
        if not 0.0 <= warmup_length < 1.0:
            raise ValueError(f"Warmup must be shorter than training (relative length {warmup_length})")
        end_value = scheduler(warmup_length)
        start_value = warmup_factor * scheduler(0.0)
        warmup = _WARMUP_METHODS[warmup_method](start_value, end_value)
        super().__init__(
            [warmup, scheduler],
            interval_scaling=["rescaled", "rescaled" if rescale_interval else "fixed"],
            lengths=[warmup_length, 1 - warmup_length],
        )


class LRMultiplier(torch.optim.lr_scheduler.LRScheduler):
    """``lr = base_lr × multiplier(iteration / max_iter)`` for every param group.

    Stepped once per iteration; ``momentum(where)`` (one-cycle) also sets each group's momentum /
    beta1. ``scale`` is an extra factor lowered by :meth:`reduce`
    (reduce-on-plateau), floored at ``min_lr`` once it is below 1. Only ``base_lrs``,
    ``last_epoch`` and ``scale`` are saved in the state dict: the multiplier is rebuilt from the config.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, multiplier: ParamScheduler, max_iter: int,
                 last_iter: int = -1, momentum: Optional[Callable[[float], float]] = None):
        if not isinstance(multiplier, ParamScheduler):
            raise TypeError(f"multiplier must be an fvcore ParamScheduler, got {type(multiplier).__name__}")
        if max_iter <= 0:
            raise ValueError(f"SOLVER.MAX_ITER must be > 0, got {max_iter}")
        self._multiplier = multiplier
        self._max_iter = max_iter
        self._momentum = momentum
        self.scale = 1.0
        self.min_lr = 0.0
        super().__init__(optimizer, last_epoch=last_iter)

    @property
    def max_iter(self) -> int:
        """The number of iterations that ``where = iteration / max_iter`` is relative to."""
        return self._max_iter

    @max_iter.setter
    def max_iter(self, value: int) -> None:
        """Set the run length (> 0); used when a wall-clock budget re-estimates it during training."""
        # a wall-clock budget re-estimates the length of the run while it trains (engine/budget.py)
        if value <= 0:
            raise ValueError(f"LRMultiplier: max_iter must be > 0, got {value}")
        self._max_iter = int(value)

    def step(self, epoch=None):
        """Advance one iteration and set each group's lr (and, for one-cycle, its momentum / beta1)."""
        super().step(epoch) if epoch is not None else super().step()
        if self._momentum is not None:
            # one-cycle: the momentum follows the schedule too (beta1 for Adam-style optimizers)
            m = self._momentum(min(max(self.last_epoch / self._max_iter, 0.0), 1.0))
            for group in self.optimizer.param_groups:
                if "betas" in group:
                    group["betas"] = (m, group["betas"][1])
                elif "momentum" in group:
                    group["momentum"] = m

    def reduce(self, factor: float, min_lr: float = 0.0) -> None:
        """Multiply the lr from the next iteration on by ``factor``."""
        self.scale *= float(factor)
        self.min_lr = float(min_lr)
        # apply now to the lr of the coming iteration (the scheduler was already stepped)
        lrs = self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        self._last_lr = lrs

    def state_dict(self):
        """Return ``base_lrs``, ``last_epoch`` (the iteration), ``scale`` and ``min_lr``.

        The multiplier itself is not saved; it is rebuilt from the config.
        """
        return {"base_lrs": list(self.base_lrs), "last_epoch": self.last_epoch, "scale": self.scale,
                "min_lr": self.min_lr}

    def load_state_dict(self, state_dict):
        """Restore ``scale`` and ``min_lr`` (defaults 1 and 0 if absent), then ``base_lrs`` and ``last_epoch``."""
        state_dict = dict(state_dict)
        self.scale = float(state_dict.pop("scale", 1.0))
        self.min_lr = float(state_dict.pop("min_lr", 0.0))
        super().load_state_dict(state_dict)

    def get_lr(self) -> List[float]:
        """Return ``base_lr × multiplier(last_epoch / max_iter) × scale`` for every group (``where`` clamped to [0, 1]).

        Floored at ``min_lr`` once ``scale < 1``; raises ``FloatingPointError`` if the multiplier is NaN.
        """
        where = min(max(self.last_epoch / self._max_iter, 0.0), 1.0)
        multiplier = self._multiplier(where)
        if math.isnan(multiplier):
            raise FloatingPointError(f"LR multiplier is NaN at iteration {self.last_epoch}")
        lrs = [base_lr * multiplier * self.scale for base_lr in self.base_lrs]
        if self.scale < 1.0:
            lrs = [max(lr, self.min_lr) for lr in lrs]
        return lrs

