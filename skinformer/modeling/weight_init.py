"""Weight initialisation of a model's new layers from ``MODEL.INIT.*``.

"New" layers are the ones outside the backbone (whose weights usually come pretrained);
``MODEL.INIT.INCLUDE_BACKBONE`` re-initialises the backbone too (randomly initialised
encoders). Convolutions (incl. transposed) and linear layers get the chosen weight init and
zero biases; normalisation layers keep their defaults (weight 1, bias 0). ``"none"`` keeps
PyTorch's / each module's own initialisation.
"""
import logging
from typing import Callable, Dict, Optional

import torch.nn as nn

__all__ = ["WEIGHT_INITS", "init_new_layers", "init_from_config"]

logger = logging.getLogger(__name__)

_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Linear)


def _xavier(w, std):
    nn.init.xavier_normal_(w)


def _kaiming(w, std):
    nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu")


def _orthogonal(w, std):
    nn.init.orthogonal_(w)


def _normal(w, std):
    nn.init.normal_(w, 0.0, std)


WEIGHT_INITS: Dict[str, Optional[Callable]] = {
    "xavier": _xavier, "kaiming": _kaiming, "orthogonal": _orthogonal, "normal": _normal, "none": None,
}


def init_new_layers(model: nn.Module, method: str, include_backbone: bool = False, std: float = 0.02) -> int:
    """Initialise conv / linear layers of ``model`` (skipping modules named ``*backbone*`` unless
    ``include_backbone``) with ``method``; returns how many layers were initialised."""
    if method not in WEIGHT_INITS:
        raise ValueError(f"MODEL.INIT.METHOD must be one of {sorted(WEIGHT_INITS)}, got '{method}'")
    fn = WEIGHT_INITS[method]
    if fn is None:
        return 0
    count = 0
    for name, module in model.named_modules():
        if not include_backbone and "backbone" in name.split("."):
            continue
        if isinstance(module, _LAYERS) and module.weight is not None and module.weight.requires_grad:
            fn(module.weight, std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
            count += 1
    logger.info("Initialised %d conv / linear layers with '%s'%s", count, method,
                "" if include_backbone else " (backbone excluded)")
    return count


def init_from_config(model: nn.Module, cfg) -> int:
    """:func:`init_new_layers` with ``MODEL.INIT``; returns how many modules were initialised."""
    c = cfg.MODEL.INIT
    return init_new_layers(model, c.METHOD, c.INCLUDE_BACKBONE, c.NORMAL_STD)
