"""Learning-rate schedules as fvcore param schedulers, applied per iteration.

A schedule is a multiplier ``m(where)`` of each param group's base lr, with
``where = iteration / MAX_ITER`` in ``[0, 1]``. :class:`LRMultiplier` turns it into a torch
``LRScheduler`` stepped once per iteration (by the ``LRScheduler`` hook). Warmup wraps any
schedule: linear from ``WARMUP_FACTOR × m(0)`` to ``m(warmup_end)`` (or constant).
"""
import math
from typing import List

import torch
from fvcore.common.param_scheduler import (
    CompositeParamScheduler,
    ConstantParamScheduler,
    LinearParamScheduler,
    ParamScheduler,
)

__all__ = ["WarmupParamScheduler", "PolyParamScheduler", "LRMultiplier"]


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

    Stepped once per iteration. Only ``base_lrs`` and ``last_epoch`` are saved in the state
    dict: the multiplier is rebuilt from the config.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, multiplier: ParamScheduler, max_iter: int,
                 last_iter: int = -1):
        if not isinstance(multiplier, ParamScheduler):
            raise TypeError(f"multiplier must be an fvcore ParamScheduler, got {type(multiplier).__name__}")
        if max_iter <= 0:
            raise ValueError(f"SOLVER.MAX_ITER must be > 0, got {max_iter}")
        self._multiplier = multiplier
        self._max_iter = max_iter
        super().__init__(optimizer, last_epoch=last_iter)

    @property
    def max_iter(self) -> int:
        return self._max_iter

    @max_iter.setter
    def max_iter(self, value: int) -> None:
        # a wall-clock budget re-estimates the length of the run while it trains (engine/budget.py)
        if value <= 0:
            raise ValueError(f"LRMultiplier: max_iter must be > 0, got {value}")
        self._max_iter = int(value)

    def state_dict(self):
        return {"base_lrs": list(self.base_lrs), "last_epoch": self.last_epoch}

    def get_lr(self) -> List[float]:
        where = min(max(self.last_epoch / self._max_iter, 0.0), 1.0)
        multiplier = self._multiplier(where)
        if math.isnan(multiplier):
            raise FloatingPointError(f"LR multiplier is NaN at iteration {self.last_epoch}")
        return [base_lr * multiplier for base_lr in self.base_lrs]

