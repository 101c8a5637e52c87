"""Optimizer (per-parameter groups, gradient clipping) and LR scheduler from a config.

Param-group rules (Mask2Former's, each from a ``SOLVER`` key):

* lr = ``BASE_LR``, × ``BACKBONE_MULTIPLIER`` for parameters of modules whose name contains
  ``"backbone"``; × ``BIAS_LR_FACTOR`` for biases;
* weight decay = ``WEIGHT_DECAY``; ``WEIGHT_DECAY_NORM`` for normalisation layers;
  ``WEIGHT_DECAY_EMBED`` for ``nn.Embedding`` and position tables (names in
  :data:`POSITION_TABLE_NAMES`); ``WEIGHT_DECAY_BIAS`` (if not None) for biases;
* groups with identical hyper-parameters are merged, so the optimizer has a handful of groups
  instead of one per parameter.

Gradient clipping (``SOLVER.CLIP_GRADIENTS``) is done inside ``optimizer.step()`` by a
subclass of the optimizer class, so under AMP it runs after the GradScaler unscaled the
gradients: ``full_model`` clips the norm over all parameters together; ``value`` / ``norm``
clip each parameter on its own.
"""
import itertools
import logging
from typing import Any, Callable, Dict, Iterable, List, Optional, Set, Type

import torch
from fvcore.common.param_scheduler import CosineParamScheduler, MultiStepParamScheduler, ParamScheduler

from .lr_scheduler import (
    ConstantMultiplier,
    CosineRestartParamScheduler,
    ExponentialParamScheduler,
    LRMultiplier,
    OneCycleParamScheduler,
    PolyParamScheduler,
    StepParamScheduler,
    WarmupParamScheduler,
)

__all__ = [
    "build_optimizer",
    "build_lr_scheduler",
    "get_default_optimizer_params",
    "maybe_add_gradient_clipping",
    "reduce_param_groups",
    "POSITION_TABLE_NAMES",
    "OPTIMIZERS",
    "LR_SCHEDULERS",
]

logger = logging.getLogger(__name__)

# parameter names that are position tables / learned queries: no weight decay (WEIGHT_DECAY_EMBED)
POSITION_TABLE_NAMES = (
    "pos_embed",
    "absolute_pos_embed",
    "relative_position_bias_table",
    "level_embed",
    "query_embed",
    "query_feat",
    "pos_embedding",
    "cls_token",
)

_NORM_TYPES = (
    torch.nn.BatchNorm1d,
    torch.nn.BatchNorm2d,
    torch.nn.BatchNorm3d,
    torch.nn.SyncBatchNorm,
    torch.nn.GroupNorm,
    torch.nn.InstanceNorm1d,
    torch.nn.InstanceNorm2d,
    torch.nn.InstanceNorm3d,
    torch.nn.LayerNorm,
    torch.nn.LocalResponseNorm,
)


def _is_norm(module: torch.nn.Module) -> bool:
    if isinstance(module, _NORM_TYPES):
        return True
    # skinformer's LayerNorm2d, timm's RmsNorm / LayerNorm2d variants, FrozenBatchNorm2d ...
    return type(module).__name__.lower().endswith(("norm", "norm1d", "norm2d", "norm3d"))


def get_default_optimizer_params(
    model: torch.nn.Module,
    base_lr: float,
    weight_decay: float,
    weight_decay_norm: float = 0.0,
    weight_decay_embed: float = 0.0,
    backbone_multiplier: float = 1.0,
    bias_lr_factor: float = 1.0,
    weight_decay_bias: Optional[float] = None,
    overrides: Optional[Dict[str, Dict[str, float]]] = None,
) -> List[Dict[str, Any]]:
    """Param groups for ``model`` by the rules in the module docstring (merged).

    ``overrides`` maps a parameter's local name (e.g. ``"pos_embed"``) to hyper-parameters that
    win over everything else. Frozen parameters (``requires_grad=False``) are skipped; a
    parameter shared by two modules is listed once.
    """
    overrides = overrides or {}
    memo: Set[torch.nn.Parameter] = set()
    params: List[Dict[str, Any]] = []
    for module_name, module in model.named_modules():
        for param_name, value in module.named_parameters(recurse=False):
            if not value.requires_grad or value in memo:
                continue
            memo.add(value)
            hp = {"lr": base_lr, "weight_decay": weight_decay}
            if "backbone" in module_name:
                hp["lr"] = hp["lr"] * backbone_multiplier
            if _is_norm(module):
                hp["weight_decay"] = weight_decay_norm
            if isinstance(module, torch.nn.Embedding) or any(n in param_name for n in POSITION_TABLE_NAMES):
                hp["weight_decay"] = weight_decay_embed
            if param_name == "bias":
                hp["lr"] = hp["lr"] * bias_lr_factor
                if weight_decay_bias is not None and not _is_norm(module):
                    hp["weight_decay"] = weight_decay_bias
            hp.update(overrides.get(param_name, {}))
            params.append({"params": [value], **hp})
    return reduce_param_groups(params)


def reduce_param_groups(params: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Merge groups with identical hyper-parameters (order of first appearance kept)."""
    groups: Dict[tuple, List[torch.nn.Parameter]] = {}
    for item in params:
        key = tuple(sorted((k, v) for k, v in item.items() if k != "params"))
        groups.setdefault(key, []).extend(item["params"])
    return [{"params": ps, **dict(key)} for key, ps in groups.items()]


# ------------------------------------------------------------------------------------------
# Gradient clipping
# ------------------------------------------------------------------------------------------
def _clip_full_model(clip_value: float, norm_type: float) -> Callable[[Iterable[torch.nn.Parameter]], None]:
    def clip(params):
        params = [p for p in params if p.grad is not None]
        if params:
            torch.nn.utils.clip_grad_norm_(params, clip_value, norm_type)
    return clip


def _clip_per_param_norm(clip_value: float, norm_type: float):
    def clip(params):
        for p in params:
            if p.grad is not None:
                torch.nn.utils.clip_grad_norm_(p, clip_value, norm_type)
    return clip


def _clip_per_param_value(clip_value: float, norm_type: float):
    def clip(params):
        for p in params:
            if p.grad is not None:
                torch.nn.utils.clip_grad_value_(p, clip_value)
    return clip


_CLIP_TYPES = {"full_model": _clip_full_model, "norm": _clip_per_param_norm, "value": _clip_per_param_value}


def maybe_add_gradient_clipping(cfg, optimizer_type: Type[torch.optim.Optimizer]) -> Type[torch.optim.Optimizer]:
    """Return ``optimizer_type`` itself, or (if ``SOLVER.CLIP_GRADIENTS.ENABLED``) a subclass
    whose ``step()`` clips gradients first."""
    clip_cfg = cfg.SOLVER.CLIP_GRADIENTS
    if not clip_cfg.ENABLED:
        return optimizer_type
    if clip_cfg.CLIP_TYPE not in _CLIP_TYPES:
        raise ValueError(
            f"SOLVER.CLIP_GRADIENTS.CLIP_TYPE must be one of {sorted(_CLIP_TYPES)}, got '{clip_cfg.CLIP_TYPE}'"
        )
    clip = _CLIP_TYPES[clip_cfg.CLIP_TYPE](float(clip_cfg.CLIP_VALUE), float(clip_cfg.NORM_TYPE))

    def step(self, closure=None):
        clip(itertools.chain(*[g["params"] for g in self.param_groups]))
        return optimizer_type.step(self, closure)

    return type(
        optimizer_type.__name__ + "WithGradientClip",
        (optimizer_type,),
        {"step": step, "clip_type": clip_cfg.CLIP_TYPE},
    )


# ------------------------------------------------------------------------------------------
# Optimizers (name -> constructor from (param groups, cfg, optimizer class))
# ------------------------------------------------------------------------------------------
_FUSED_DEVICES = ("cpu", "cuda")


def _fused(params, cfg) -> Dict[str, bool]:
    """``{"fused": True}`` when ``SOLVER.FUSED_OPTIMIZER`` is on and torch has the fused kernel for
    every parameter (floating point, on CPU or CUDA); else torch's default implementation."""
    if not cfg.SOLVER.FUSED_OPTIMIZER:
        return {}
    tensors = [p for g in params for p in g["params"]]
    if all(p.is_floating_point() and p.device.type in _FUSED_DEVICES for p in tensors):
        return {"fused": True}
    return {}


def _adamw(params, cfg):
    return torch.optim.AdamW, {"lr": cfg.SOLVER.BASE_LR, "betas": tuple(cfg.SOLVER.BETAS), **_fused(params, cfg)}


def _adam(params, cfg):
    return torch.optim.Adam, {"lr": cfg.SOLVER.BASE_LR, "betas": tuple(cfg.SOLVER.BETAS), **_fused(params, cfg)}


def _sgd(params, cfg):
    return torch.optim.SGD, {"lr": cfg.SOLVER.BASE_LR, "momentum": cfg.SOLVER.MOMENTUM,
                             "nesterov": cfg.SOLVER.NESTEROV}


def _rmsprop(params, cfg):
    return torch.optim.RMSprop, {"lr": cfg.SOLVER.BASE_LR, "momentum": cfg.SOLVER.MOMENTUM,
                                 "alpha": cfg.SOLVER.RMSPROP_ALPHA, "eps": cfg.SOLVER.EPS}


def _adagrad(params, cfg):
    return torch.optim.Adagrad, {"lr": cfg.SOLVER.BASE_LR, "lr_decay": cfg.SOLVER.ADAGRAD_LR_DECAY,
                                 "eps": cfg.SOLVER.EPS}


OPTIMIZERS: Dict[str, Callable] = {"ADAMW": _adamw, "ADAM": _adam, "SGD": _sgd, "RMSPROP": _rmsprop,
                                   "ADAGRAD": _adagrad}


def build_optimizer(cfg, model: torch.nn.Module) -> torch.optim.Optimizer:
    """Optimizer ``SOLVER.OPTIMIZER`` over :func:`get_default_optimizer_params` groups, with
    ``SOLVER.CLIP_GRADIENTS`` applied inside ``step()``."""
    name = str(cfg.SOLVER.OPTIMIZER).upper()
    if name not in OPTIMIZERS:
        raise ValueError(f"Unknown SOLVER.OPTIMIZER '{cfg.SOLVER.OPTIMIZER}'; valid: {sorted(OPTIMIZERS)}")
    params = get_default_optimizer_params(
        model,
        base_lr=cfg.SOLVER.BASE_LR,
        weight_decay=cfg.SOLVER.WEIGHT_DECAY,
        weight_decay_norm=cfg.SOLVER.WEIGHT_DECAY_NORM,
        weight_decay_embed=cfg.SOLVER.WEIGHT_DECAY_EMBED,
        backbone_multiplier=cfg.SOLVER.BACKBONE_MULTIPLIER,
        bias_lr_factor=cfg.SOLVER.BIAS_LR_FACTOR,
        weight_decay_bias=cfg.SOLVER.WEIGHT_DECAY_BIAS,
    )
    if not params:
        raise ValueError("The model has no trainable parameters (all requires_grad=False)")
    optimizer_type, kwargs = OPTIMIZERS[name](params, cfg)
    optimizer = maybe_add_gradient_clipping(cfg, optimizer_type)(params, **kwargs)
    logger.info(
        "Optimizer %s%s with %d param groups: %s", type(optimizer).__name__,
        " (fused)" if optimizer.defaults.get("fused") else "", len(optimizer.param_groups),
        "; ".join(f"{len(g['params'])} params lr={g['lr']:.3g} wd={g['weight_decay']:.3g}"
                  for g in optimizer.param_groups),
    )
    return optimizer


# ------------------------------------------------------------------------------------------
# LR schedules (name -> multiplier schedule from cfg)
# ------------------------------------------------------------------------------------------
def _multistep_schedule(cfg) -> ParamScheduler:
    max_iter = cfg.SOLVER.MAX_ITER
    steps = [int(s) for s in cfg.SOLVER.STEPS if 0 < s < max_iter]
    if len(steps) != len(cfg.SOLVER.STEPS):
        logger.warning("SOLVER.STEPS %s contains values outside (0, MAX_ITER=%d); they are ignored.",
                       list(cfg.SOLVER.STEPS), max_iter)
    return MultiStepParamScheduler(
        values=[cfg.SOLVER.GAMMA ** k for k in range(len(steps) + 1)], milestones=steps, num_updates=max_iter,
    )


def _cosine_schedule(cfg) -> ParamScheduler:
    end_value = cfg.SOLVER.BASE_LR_END / cfg.SOLVER.BASE_LR if cfg.SOLVER.BASE_LR > 0 else 0.0
    return CosineParamScheduler(1.0, end_value)


def _poly_schedule(cfg) -> ParamScheduler:
    return PolyParamScheduler(cfg.SOLVER.POLY_LR_POWER, cfg.SOLVER.POLY_LR_CONSTANT_ENDING)


def _step_schedule(cfg, unit: int) -> ParamScheduler:
    return StepParamScheduler(cfg.SOLVER.MAX_ITER, cfg.SOLVER.STEP_SIZE, cfg.SOLVER.GAMMA, unit)


def _exponential_schedule(cfg, unit: int) -> ParamScheduler:
    return ExponentialParamScheduler(cfg.SOLVER.MAX_ITER, cfg.SOLVER.GAMMA, unit)


def _cosine_restart_schedule(cfg, unit: int) -> ParamScheduler:
    end_value = cfg.SOLVER.BASE_LR_END / cfg.SOLVER.BASE_LR if cfg.SOLVER.BASE_LR > 0 else 0.0
    c = cfg.SOLVER.COSINE_RESTART
    return CosineRestartParamScheduler(cfg.SOLVER.MAX_ITER, c.T_0, c.T_MULT, end_value, unit)


def _one_cycle_schedule(cfg, unit: int) -> ParamScheduler:
    c = cfg.SOLVER.ONE_CYCLE
    return OneCycleParamScheduler(cfg.SOLVER.MAX_ITER, c.PCT_START, c.DIV_FACTOR, c.FINAL_DIV_FACTOR, unit,
                                  c.BASE_MOMENTUM, c.MAX_MOMENTUM)


def _plateau_schedule(cfg, unit: int) -> ParamScheduler:
    # constant; the ReduceLROnPlateau hook lowers LRMultiplier.scale on the validation metric
    if not cfg.SOLVER.PLATEAU.METRIC:
        raise ValueError("SOLVER.LR_SCHEDULER_NAME 'ReduceLROnPlateau' needs SOLVER.PLATEAU.METRIC (a validation "
                         "metric such as 'isic_task1/jaccard') and TEST.EVAL_PERIOD or TEST.EVAL_PERIOD_EPOCHS > 0")
    return ConstantMultiplier()


# name -> schedule from (cfg, iterations per step unit); the first three are per iteration by design
LR_SCHEDULERS: Dict[str, Callable[[Any, int], ParamScheduler]] = {
    "WarmupMultiStepLR": lambda cfg, unit: _multistep_schedule(cfg),
    "WarmupCosineLR": lambda cfg, unit: _cosine_schedule(cfg),
    "WarmupPolyLR": lambda cfg, unit: _poly_schedule(cfg),
    "WarmupStepLR": _step_schedule,
    "WarmupExponentialLR": _exponential_schedule,
    "WarmupCosineRestartLR": _cosine_restart_schedule,
    "OneCycleLR": _one_cycle_schedule,
    "ReduceLROnPlateau": _plateau_schedule,
}

_STEP_UNITS = ("iter", "epoch")


def build_lr_scheduler(cfg, optimizer: torch.optim.Optimizer, iters_per_epoch: Optional[int] = None) -> LRMultiplier:
    """Per-iteration scheduler ``SOLVER.LR_SCHEDULER_NAME`` with ``SOLVER.WARMUP_*`` warmup.

    With ``SOLVER.SCHEDULER_STEP_UNIT "epoch"`` the step-based schedules (step, exponential,
    cosine restarts, one-cycle) count ``STEP_SIZE`` / ``T_0`` / the one-cycle length in epochs
    and hold the lr constant within an epoch; ``iters_per_epoch`` defaults to the training set's.
    """
    name = cfg.SOLVER.LR_SCHEDULER_NAME
    if name not in LR_SCHEDULERS:
        raise ValueError(f"Unknown SOLVER.LR_SCHEDULER_NAME '{name}'; valid: {sorted(LR_SCHEDULERS)}")
    unit_name = cfg.SOLVER.SCHEDULER_STEP_UNIT
    if unit_name not in _STEP_UNITS:
        raise ValueError(f"SOLVER.SCHEDULER_STEP_UNIT must be one of {_STEP_UNITS}, got '{unit_name}'")
    unit = 1
    if unit_name == "epoch":
        from .epochs import iters_per_epoch as _ipe

        unit = int(iters_per_epoch) if iters_per_epoch is not None else _ipe(cfg)
    sched = LR_SCHEDULERS[name](cfg, unit)
    momentum = None
    if isinstance(sched, OneCycleParamScheduler) and cfg.SOLVER.ONE_CYCLE.CYCLE_MOMENTUM:
        momentum = sched.momentum
    max_iter = cfg.SOLVER.MAX_ITER
    warmup_iters = cfg.SOLVER.WARMUP_ITERS
    if warmup_iters >= max_iter > 0:
        # short runs of a shipped recipe (smoke tests, debugging) should not need an extra override
        clamped = max_iter - 1
        logging.getLogger(__name__).warning(
            "SOLVER.WARMUP_ITERS (%d) >= SOLVER.MAX_ITER (%d): warmup clamped to %d iterations.",
            warmup_iters, max_iter, clamped)
        warmup_iters = clamped
    if warmup_iters > 0:
        sched = WarmupParamScheduler(
            sched, cfg.SOLVER.WARMUP_FACTOR, warmup_iters / max_iter, cfg.SOLVER.WARMUP_METHOD,
        )
    logger.info("LR scheduler %s%s", name, f" stepped per epoch ({unit} iterations)" if unit > 1 else "")
    return LRMultiplier(optimizer, multiplier=sched, max_iter=max_iter, momentum=momentum)
