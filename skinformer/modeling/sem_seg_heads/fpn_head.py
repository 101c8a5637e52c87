"""A light FPN head: top-down feature pyramid, every level resized to the finest stride and summed."""
from typing import Dict, List

import torch
import torch.nn as nn
import torch.nn.functional as F

from skinformer.config import configurable
from skinformer.layers import ShapeSpec

from .build import SEM_SEG_HEAD_REGISTRY
from .common import conv_norm_act, head_arguments, init_predictor, resize_to

__all__ = ["FPNHead"]


@SEM_SEG_HEAD_REGISTRY.register()
class FPNHead(nn.Module):
    """Lateral 1×1 convs + top-down sum + 3×3 output convs (FPN), then every level is resized to
    the finest input stride, summed, fused by a 3×3 conv and classified by a 1×1 conv.

    Args:
        input_shape: ``{name: ShapeSpec}`` of the features to use.
        num_classes: output channels (``NUM_CLASSES + 1`` for per-pixel models).
        conv_dims: FPN width.
        norm: norm of the 3×3 convs ("GN", "BN", "" ...).

    ``forward(features) -> B×num_classes×H/s×W/s`` with ``s = common_stride`` = finest input stride.
    """

    @configurable
    def __init__(self, input_shape: Dict[str, ShapeSpec], *, num_classes: int, conv_dims: int = 128,
                 norm: str = "GN"):
        super().__init__()
        items = sorted(input_shape.items(), key=lambda kv: kv[1].stride)
        self.in_features: List[str] = [k for k, _ in items]
        self.common_stride = items[0][1].stride
        self.lateral_convs = nn.ModuleList()
        self.output_convs = nn.ModuleList()
        for _, shape in items:
            lateral = nn.Conv2d(shape.channels, conv_dims, kernel_size=1)
            nn.init.kaiming_uniform_(lateral.weight, a=1)
            nn.init.zeros_(lateral.bias)
            self.lateral_convs.append(lateral)
            self.output_convs.append(conv_norm_act(conv_dims, conv_dims, 3, norm=norm))
        self.fuse = conv_norm_act(conv_dims, conv_dims, 3, norm=norm)
        self.predictor = init_predictor(nn.Conv2d(conv_dims, num_classes, kernel_size=1))

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        """Keyword arguments from ``cfg.MODEL.SEM_SEG_HEAD`` (``NUM_CLASSES + 1`` outputs)."""
        h = cfg.MODEL.SEM_SEG_HEAD
        return head_arguments(cfg, input_shape, conv_dims=h.CONVS_DIM)

    def forward(self, features: Dict[str, torch.Tensor]) -> torch.Tensor:
        """Backbone features -> ``B×num_classes×H/s×W/s`` logits at the finest input stride ``s``."""
        # Top-down pass from the coarsest level.
        prev = None
        outs = []
        for idx in range(len(self.in_features) - 1, -1, -1):
            x = self.lateral_convs[idx](features[self.in_features[idx]])
            if prev is not None:
                x = x + F.interpolate(prev, size=x.shape[-2:], mode="nearest")
            prev = x
            outs.append(self.output_convs[idx](x))
        finest = outs[-1]
        y = finest
        for o in outs[:-1]:
            y = y + resize_to(o, finest)
        return self.predictor(self.fuse(y))
