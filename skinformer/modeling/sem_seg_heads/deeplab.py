"""DeepLabV3+: Atrous Spatial Pyramid Pooling on the deepest feature and a low-level decoder."""
from typing import Dict, List, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from skinformer.config import configurable
from skinformer.layers import ShapeSpec

from .build import SEM_SEG_HEAD_REGISTRY
from .common import conv_norm_act, init_predictor, resize_to

__all__ = ["ASPP", "DeepLabV3PlusHead"]


class ASPP(nn.Module):
    """Image pooling + 1×1 + one dilated 3×3 branch per dilation, concatenated and projected.

    ``B×C_in×h×w -> B×channels×h×w``. The image-pooling branch has no norm: it is 1×1 spatially, so
    BatchNorm on it fails for batch size 1 in training and GroupNorm would zero it.
    """

    def __init__(self, in_channels: int, channels: int, dilations: Sequence[int], *, norm: str = "BN",
                 dropout: float = 0.1):
        super().__init__()
        self.branches = nn.ModuleList([conv_norm_act(in_channels, channels, 1, norm=norm)])
        for d in dilations:
            self.branches.append(conv_norm_act(in_channels, channels, 3, norm=norm, dilation=int(d)))
        self.pool_conv = conv_norm_act(in_channels, channels, 1, norm="")
        self.project = conv_norm_act(channels * (len(self.branches) + 1), channels, 1, norm=norm)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Concatenated branches and image pooling, projected: ``B×C_in×H×W -> B×C×H×W``."""
        outs = [b(x) for b in self.branches]
        pooled = self.pool_conv(F.adaptive_avg_pool2d(x, 1))
        outs.append(pooled.expand(-1, -1, x.shape[-2], x.shape[-1]))
        return self.dropout(self.project(torch.cat(outs, dim=1)))


@SEM_SEG_HEAD_REGISTRY.register()
class DeepLabV3PlusHead(nn.Module):
    """ASPP on ``in_feature`` (e.g. res5 at stride 16 with RES5_DILATION 2), then for each low-level
    feature from coarse to fine (e.g. res2): 1×1 projection, concatenation with the upsampled
    decoder state and two 3×3 convs. A 1×1 classifier predicts logits at the finest projected stride.

    Args:
        input_shape: backbone output shapes (must contain ``in_feature`` and ``project_features``).
        num_classes: output channels (``NUM_CLASSES + 1``).
        in_feature: the ASPP input.
        project_features / project_channels: low-level features and their projected widths (48).
        aspp_channels, aspp_dilations, dropout: ASPP width, dilations (6, 12, 18 at stride 16) and dropout.
        conv_dims: decoder width (256).
        norm: norm of every conv but the pooling branch and the classifier.

    ``forward(features) -> B×num_classes×H/s×W/s``, ``s = common_stride`` (the finest projected stride).
    """

    @configurable
    def __init__(self, input_shape: Dict[str, ShapeSpec], *, num_classes: int, in_feature: str,
                 project_features: Sequence[str] = ("res2",), project_channels: Sequence[int] = (48,),
                 aspp_channels: int = 256, aspp_dilations: Sequence[int] = (6, 12, 18), dropout: float = 0.1,
                 conv_dims: int = 256, norm: str = "BN"):
        super().__init__()
        if len(project_features) != len(project_channels):
            raise ValueError(f"DeepLabV3PlusHead: PROJECT_FEATURES {list(project_features)} and PROJECT_CHANNELS "
                             f"{list(project_channels)} must have the same length")
        missing = [f for f in [in_feature, *project_features] if f not in input_shape]
        if missing:
            raise ValueError(f"DeepLabV3PlusHead: features {missing} are not among the backbone outputs "
                             f"{sorted(input_shape)}")
        self.in_feature = in_feature
        self.aspp = ASPP(input_shape[in_feature].channels, aspp_channels, aspp_dilations, norm=norm, dropout=dropout)
        # Decode from the coarsest low-level feature to the finest.
        order = sorted(zip(project_features, project_channels), key=lambda fc: -input_shape[fc[0]].stride)
        self.project_features: List[str] = [f for f, _ in order]
        self.projections = nn.ModuleList()
        self.fusions = nn.ModuleList()
        channels = aspp_channels
        for f, c in order:
            self.projections.append(conv_norm_act(input_shape[f].channels, c, 1, norm=norm))
            self.fusions.append(nn.Sequential(
                conv_norm_act(channels + c, conv_dims, 3, norm=norm),
                conv_norm_act(conv_dims, conv_dims, 3, norm=norm),
            ))
            channels = conv_dims
        self.common_stride = input_shape[order[-1][0]].stride if order else input_shape[in_feature].stride
        self.predictor = init_predictor(nn.Conv2d(channels, num_classes, kernel_size=1))

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        """Keyword arguments from ``cfg.MODEL.SEM_SEG_HEAD`` (``NUM_CLASSES + 1`` outputs, ASPP on the last
        ``IN_FEATURES``)."""
        h = cfg.MODEL.SEM_SEG_HEAD
        return {
            "input_shape": input_shape,
            "num_classes": h.NUM_CLASSES + 1,
            "in_feature": h.IN_FEATURES[-1],
            "project_features": list(h.PROJECT_FEATURES),
            "project_channels": list(h.PROJECT_CHANNELS),
            "aspp_channels": h.ASPP_CHANNELS,
            "aspp_dilations": list(h.ASPP_DILATIONS),
            "dropout": h.DROPOUT,
            "conv_dims": h.CONVS_DIM,
            "norm": h.NORM,
        }

    def forward(self, features: Dict[str, torch.Tensor]) -> torch.Tensor:
        """Backbone features -> ``B×num_classes×H/s×W/s`` logits."""
        y = self.aspp(features[self.in_feature])
        for name, proj, fuse in zip(self.project_features, self.projections, self.fusions):
            low = proj(features[name])
            y = fuse(torch.cat([resize_to(y, low), low], dim=1))
        return self.predictor(y)
