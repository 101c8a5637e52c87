"""Small building blocks shared by the per-pixel heads."""
from typing import Any, Dict

import torch.nn as nn
import torch.nn.functional as F

from skinformer.layers import Conv2d, get_norm

__all__ = ["conv_norm_act", "init_predictor", "resize_to", "head_arguments"]


def conv_norm_act(in_channels: int, out_channels: int, kernel_size: int = 3, *, norm: str = "GN",
                  dilation: int = 1, activation: bool = True, stride: int = 1) -> Conv2d:
    """``Conv2d`` (same padding) + norm + ReLU. The conv has a bias only when there is no norm
    (a bias before a norm is cancelled by it)."""
    conv = Conv2d(
        in_channels, out_channels, kernel_size=kernel_size, padding=dilation * (kernel_size // 2),
        dilation=dilation, stride=stride, bias=not norm, norm=get_norm(norm, out_channels),
        activation=nn.ReLU(inplace=True) if activation else None,
    )
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv


def init_predictor(conv: nn.Conv2d) -> nn.Conv2d:
    # Small weights: initial logits are near 0, so the first losses are the uniform-prior losses.
    """Initialise a prediction conv with N(0, 0.01) weights and zero bias; returns it."""
    nn.init.normal_(conv.weight, std=0.01)
    nn.init.zeros_(conv.bias)
    return conv


def resize_to(x, ref):
    """Bilinearly resize ``x`` (B×C×h×w) to the spatial size of ``ref`` (B×?×H×W)."""
    if x.shape[-2:] == ref.shape[-2:]:
        return x
    return F.interpolate(x, size=ref.shape[-2:], mode="bilinear", align_corners=False)


def head_arguments(cfg, input_shape: Dict, **extra) -> Dict[str, Any]:
    """The ``from_config`` keyword arguments every per-pixel head takes from ``cfg.MODEL.SEM_SEG_HEAD``:
    the ``IN_FEATURES`` of ``input_shape``, ``NUM_CLASSES + 1`` outputs (the last is "no class") and
    ``NORM``; ``extra`` adds the head's own."""
    h = cfg.MODEL.SEM_SEG_HEAD
    return {"input_shape": {k: v for k, v in input_shape.items() if k in h.IN_FEATURES},
            "num_classes": h.NUM_CLASSES + 1, "norm": h.NORM, **extra}
