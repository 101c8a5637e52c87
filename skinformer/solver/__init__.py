"""Optimizers with per-parameter groups, gradient clipping and per-iteration LR schedules."""
from .build import (
    LR_SCHEDULERS,
    OPTIMIZERS,
    POSITION_TABLE_NAMES,
    build_lr_scheduler,
    build_optimizer,
    get_default_optimizer_params,
    maybe_add_gradient_clipping,
    reduce_param_groups,
)
from .epochs import apply_epoch_budgets, iters_per_epoch
from .lr_scheduler import (
    CosineRestartParamScheduler,
    ExponentialParamScheduler,
    LRMultiplier,
    OneCycleParamScheduler,
    PolyParamScheduler,
    StepParamScheduler,
    UnitParamScheduler,
    WarmupParamScheduler,
)
