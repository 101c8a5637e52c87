"""FPN building block shared by the pixel decoders, and the light FPN pixel decoder.

:class:`FPNFusion` is the one top-down step both pixel decoders use: a lateral 1×1 conv on the
finer backbone map, a merge with the upsampled coarser map, and a 3×3 output conv. The merge is
chosen by name from :data:`FPN_FUSIONS` (``MODEL.SEM_SEG_HEAD.FPN_FUSION``):

* ``"SUM"``: ``lateral + up(coarser)`` → 3×3 conv (C → C) + norm + ReLU (Mask2Former, MaskDINO).
* ``"CONCAT"``: ``cat[lateral, up(coarser)]`` → 3×3 conv (2C → C) + norm + ReLU (SiMaskFormer).
"""
from typing import Callable, Dict, List, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from skinformer.config import configurable
from skinformer.layers import Conv2d, ShapeSpec, c2_xavier_fill, get_norm

from .build import PIXEL_DECODER_REGISTRY

__all__ = ["FPN_FUSIONS", "FPNFusion", "BasePixelDecoder"]


def _sum(lateral: torch.Tensor, coarser: torch.Tensor) -> torch.Tensor:
    return lateral + coarser


def _concat(lateral: torch.Tensor, coarser: torch.Tensor) -> torch.Tensor:
    return torch.cat([lateral, coarser], dim=1)


# name -> (input width of the output conv in units of conv_dim, merge function)
FPN_FUSIONS: Dict[str, Tuple[int, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]] = {
    "SUM": (1, _sum),
    "CONCAT": (2, _concat),
}


def _check_fusion(fusion: str) -> str:
    if fusion not in FPN_FUSIONS:
        raise ValueError(
            f"Unknown FPN fusion {fusion!r} (MODEL.SEM_SEG_HEAD.FPN_FUSION); expected one of {sorted(FPN_FUSIONS)}"
        )
    return fusion


class FPNFusion(nn.Module):
    """One top-down FPN step: ``(finer backbone map B×C_in×H×W, coarser map B×D×h×w) -> B×D×H×W``.

    Args:
        in_channels: channels of the finer backbone map.
        conv_dim: D, channels of the FPN maps.
        norm: norm name for both convs (convs have a bias only without norm).
        fusion: key of :data:`FPN_FUSIONS`.
        upsample_mode: interpolation of the coarser map ("bilinear" or "nearest").
    """

    def __init__(self, in_channels: int, conv_dim: int, norm: str = "GN", fusion: str = "SUM",
                 upsample_mode: str = "bilinear"):
        super().__init__()
        width, self._merge = FPN_FUSIONS[_check_fusion(fusion)]
        self.fusion = fusion
        self.upsample_mode = upsample_mode
        use_bias = norm == ""
        self.lateral_conv = Conv2d(in_channels, conv_dim, kernel_size=1, bias=use_bias, norm=get_norm(norm, conv_dim))
        self.output_conv = Conv2d(width * conv_dim, conv_dim, kernel_size=3, padding=1, bias=use_bias,
                                  norm=get_norm(norm, conv_dim), activation=F.relu)
        c2_xavier_fill(self.lateral_conv)
        c2_xavier_fill(self.output_conv)

    def forward(self, x: torch.Tensor, coarser: torch.Tensor) -> torch.Tensor:
        """Lateral conv of ``x``, upsampled ``coarser`` merged in, output conv: ``B×D×H×W``."""
        lateral = self.lateral_conv(x)
        kwargs = {"align_corners": False} if self.upsample_mode in ("bilinear", "bicubic") else {}
        up = F.interpolate(coarser, size=lateral.shape[-2:], mode=self.upsample_mode, **kwargs)
        return self.output_conv(self._merge(lateral, up))


@PIXEL_DECODER_REGISTRY.register()
class BasePixelDecoder(nn.Module):
    """Light FPN pixel decoder (MaskFormer's): no transformer encoder.

    The coarsest feature gets a 3×3 conv; every finer one an :class:`FPNFusion` step (nearest
    upsampling, as MaskFormer). ``mask_features`` = 3×3 conv of the finest FPN map;
    ``multi_scale_features`` = the first ``num_feature_levels`` FPN maps, low resolution first.
    """

    @configurable
    def __init__(self, input_shape: Dict[str, ShapeSpec], *, conv_dim: int, mask_dim: int, norm: str = "GN",
                 fusion: str = "SUM", num_feature_levels: int = 3):
        super().__init__()
        shapes = sorted(input_shape.items(), key=lambda kv: kv[1].stride)
        if len(shapes) < num_feature_levels:
            raise ValueError(
                f"BasePixelDecoder: {len(shapes)} input features {[k for k, _ in shapes]} < "
                f"num_feature_levels={num_feature_levels} (MODEL.SEM_SEG_HEAD.IN_FEATURES / NUM_FEATURE_LEVELS)"
            )
        self.in_features = [k for k, _ in shapes]  # fine -> coarse
        channels = [v.channels for _, v in shapes]
        use_bias = norm == ""
        self.top_conv = Conv2d(channels[-1], conv_dim, kernel_size=3, padding=1, bias=use_bias,
                               norm=get_norm(norm, conv_dim), activation=F.relu)
        c2_xavier_fill(self.top_conv)
        # coarse -> fine, excluding the coarsest
        self.fusions = nn.ModuleList(
            FPNFusion(c, conv_dim, norm, fusion, upsample_mode="nearest") for c in channels[:-1][::-1]
        )
        self.mask_dim = mask_dim
        self.mask_features = Conv2d(conv_dim, mask_dim, kernel_size=3, padding=1)
        c2_xavier_fill(self.mask_features)
        self.num_feature_levels = num_feature_levels
        self.common_stride = shapes[0][1].stride

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        """Keyword arguments from ``cfg.MODEL.SEM_SEG_HEAD`` and the backbone ``input_shape``."""
        head = cfg.MODEL.SEM_SEG_HEAD
        return {
            "input_shape": _select_features(input_shape, head.IN_FEATURES),
            "conv_dim": head.CONVS_DIM,
            "mask_dim": head.MASK_DIM,
            "norm": head.NORM,
            "fusion": head.FPN_FUSION,
            "num_feature_levels": head.NUM_FEATURE_LEVELS,
        }

    def forward_features(self, features: Dict[str, torch.Tensor]) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """
        Args:
            features: backbone maps by name.
        Returns:
            ``mask_features`` ``B×mask_dim×H/s×W/s`` (s = finest input stride) and the
            ``multi_scale_features`` list (``B×conv_dim×h×w``, low resolution first).
        """
        names = self.in_features[::-1]
        y = self.top_conv(features[names[0]])
        multi_scale = [y]
        for name, fusion in zip(names[1:], self.fusions):
            y = fusion(features[name], y)
            if len(multi_scale) < self.num_feature_levels:
                multi_scale.append(y)
        return self.mask_features(y), multi_scale

    def forward(self, features):
        """Same as :meth:`forward_features`."""
        return self.forward_features(features)


def _select_features(input_shape: Dict[str, ShapeSpec], names) -> Dict[str, ShapeSpec]:
    """The backbone shapes named by ``names`` (MODEL.SEM_SEG_HEAD.IN_FEATURES), with a clear error."""
    missing = [n for n in names if n not in input_shape]
    if missing:
        raise ValueError(
            f"MODEL.SEM_SEG_HEAD.IN_FEATURES names {missing}, which the backbone does not output; "
            f"it outputs {sorted(input_shape)}"
        )
    return {n: input_shape[n] for n in names}
