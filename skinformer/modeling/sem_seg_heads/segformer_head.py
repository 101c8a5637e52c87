"""SegFormer's all-MLP decode head."""
from typing import Dict, List

import torch
import torch.nn as nn

from skinformer.config import configurable
from skinformer.layers import ShapeSpec

from .build import SEM_SEG_HEAD_REGISTRY
from .common import conv_norm_act, head_arguments, init_predictor, resize_to

__all__ = ["SegFormerHead"]


@SEM_SEG_HEAD_REGISTRY.register()
class SegFormerHead(nn.Module):
    """Each level is linearly embedded (a 1×1 conv = a per-pixel MLP layer) to ``embed_dim``,
    resized to the finest stride, concatenated (coarsest first, as in SegFormer), fused by a 1×1
    conv + norm + ReLU, dropped out and classified.

    Args:
        input_shape: shapes of the features to use.
        num_classes: output channels (``NUM_CLASSES + 1``).
        embed_dim: MLP width (256 for MiT-B0/B1, 768 for B2-B5).
        dropout: before the classifier.
        norm: norm after fusion ("BN" in SegFormer).

    ``forward(features) -> B×num_classes×H/s×W/s`` with ``s = common_stride`` = finest input stride.
    """

    @configurable
    def __init__(self, input_shape: Dict[str, ShapeSpec], *, num_classes: int, embed_dim: int = 256,
                 dropout: float = 0.1, norm: str = "BN"):
        super().__init__()
        items = sorted(input_shape.items(), key=lambda kv: -kv[1].stride)  # coarsest first
        self.in_features: List[str] = [k for k, _ in items]
        self.common_stride = items[-1][1].stride
        self.embeds = nn.ModuleList([nn.Conv2d(s.channels, embed_dim, kernel_size=1) for _, s in items])
        self.fuse = conv_norm_act(embed_dim * len(items), embed_dim, 1, norm=norm)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.predictor = init_predictor(nn.Conv2d(embed_dim, num_classes, kernel_size=1))

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        """Keyword arguments from ``cfg.MODEL.SEM_SEG_HEAD`` (``NUM_CLASSES + 1`` outputs)."""
        h = cfg.MODEL.SEM_SEG_HEAD
        return head_arguments(cfg, input_shape, embed_dim=h.CONVS_DIM, dropout=h.DROPOUT)

    def forward(self, features: Dict[str, torch.Tensor]) -> torch.Tensor:
        """Backbone features -> ``B×num_classes×H/s×W/s`` logits at the finest input stride ``s``."""
        finest = features[self.in_features[-1]]
        embedded = [resize_to(embed(features[name]), finest) for name, embed in zip(self.in_features, self.embeds)]
        return self.predictor(self.dropout(self.fuse(torch.cat(embedded, dim=1))))
