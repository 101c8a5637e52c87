"""The classic U-Net encoder (Ronneberger et al.), trained from scratch: no pretrained weights.

Five levels of two 3×3 conv + norm + ReLU, a 2×2 max-pool between levels; widths 64..1024 by
default (the milesial / Technion layout). ``residual`` turns each double conv into a residual
block (1×1-projected identity added before the last ReLU: the "residual U-Net" encoder).
"""
from typing import Dict, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from skinformer.config import configurable
from skinformer.layers import ShapeSpec

from ..sem_seg_heads.unet import ConvBlock
from .backbone import Backbone
from .build import BACKBONE_REGISTRY

__all__ = ["UNetEncoder"]


@BACKBONE_REGISTRY.register()
class UNetEncoder(Backbone):
    """Level ``i`` (0-based) has stride ``2**i`` and is named ``res{i}`` (``res_i`` has stride 2^i,
    as for the other backbones): with the default five widths the outputs are ``res0`` (stride 1,
    64 ch) .. ``res4`` (stride 16, 1024 ch).

    Args:
        in_channels: image channels.
        channels: width of each level, shallowest first.
        norm: norm of every conv ("BN" in the classic U-Net).
        residual: residual double-conv blocks.
        out_features: subset of ``res0..res{len(channels)-1}`` to return.

    ``forward``: ``B×C×H×W`` (H, W multiples of ``2**(len(channels)-1)``) -> ``{res_i: B×C_i×H/2^i×W/2^i}``.
    """

    @configurable
    def __init__(self, *, in_channels: int = 3, channels: Sequence[int] = (64, 128, 256, 512, 1024),
                 norm: str = "BN", residual: bool = False, out_features: Sequence[str] = ()):
        super().__init__()
        if len(channels) < 2:
            raise ValueError(f"MODEL.UNET_ENCODER.CHANNELS needs at least two levels, got {list(channels)}")
        names = [f"res{i}" for i in range(len(channels))]
        out_features = list(out_features) or names
        bad = [f for f in out_features if f not in names]
        if bad:
            raise ValueError(f"UNetEncoder out_features {bad} unknown; with {len(channels)} levels the features are {names}")
        self.levels = nn.ModuleList()
        prev = in_channels
        for c in channels:
            self.levels.append(ConvBlock(prev, c, norm=norm, residual=residual))
            prev = c
        self._names = names
        self._out_features = [n for n in names if n in out_features]
        self._out_feature_channels = {n: int(c) for n, c in zip(names, channels)}
        self._out_feature_strides = {n: 2 ** i for i, n in enumerate(names)}

    @classmethod
    def from_config(cls, cfg, input_shape: ShapeSpec = None):
        """Keyword arguments from ``cfg.MODEL.UNET_ENCODER`` (input channels from ``input_shape``,
        default 3)."""
        node = cfg.MODEL.UNET_ENCODER
        return {
            "in_channels": input_shape.channels if input_shape is not None and input_shape.channels else 3,
            "channels": list(node.CHANNELS),
            "norm": node.NORM,
            "residual": node.RESIDUAL,
            "out_features": list(node.OUT_FEATURES),
        }

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """``B×C×H×W`` -> ``{res_i: B×C_i×H/2^i×W/2^i}`` for the output features (2×2 max pool before
        each level but the first)."""
        out = {}
        for i, (name, level) in enumerate(zip(self._names, self.levels)):
            if i > 0:
                x = F.max_pool2d(x, kernel_size=2)
            x = level(x)
            if name in self._out_features:
                out[name] = x
        return out

    @property
    def size_divisibility(self) -> int:
        """``2**(levels - 1)``, the stride of the deepest level."""
        return 2 ** (len(self.levels) - 1)
