"""Sine position encodings (DETR / Deformable-DETR / DINO conventions).

* :class:`PositionEmbeddingSine`: a 2-D encoding of every pixel of a feature map.
* :func:`gen_sineembed_for_position`: the encoding of points (``...×2``, cx cy) or boxes
  (``...×4``, cx cy w h) given in normalised [0, 1] coordinates.

Both use ``num_pos_feats`` features per coordinate, frequencies
``temperature ** (2 * (k // 2) / num_pos_feats)``, coordinates scaled to [0, 2π] and
interleaved sin / cos (feature 2j = sin, 2j+1 = cos of the same frequency).
"""
import math
from typing import Optional

import torch
import torch.nn as nn

__all__ = ["PositionEmbeddingSine", "gen_sineembed_for_position"]


def _frequencies(num_pos_feats: int, temperature: float, device, dtype=torch.float32) -> torch.Tensor:
    dim_t = torch.arange(num_pos_feats, dtype=dtype, device=device)
    return temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_pos_feats)


def _interleave_sin_cos(x: torch.Tensor) -> torch.Tensor:
    """``...×F`` phases -> ``...×F`` with sin on even and cos on odd features, interleaved."""
    return torch.stack((x[..., 0::2].sin(), x[..., 1::2].cos()), dim=-1).flatten(-2)


class PositionEmbeddingSine(nn.Module):
    """2-D sine encoding of a feature map, ``B×C×H×W`` -> ``B×(2·num_pos_feats)×H×W``.

    Channels are ``[y-part, x-part]``. With ``normalize`` the (cumulative, 1-based) coordinates
    are divided by the extent of the valid region and scaled to ``[0, scale]``.

    Args:
        num_pos_feats: features per axis (half the output channels).
        temperature: frequency base.
        normalize: normalise the coordinates (Mask2Former / Deformable-DETR use True).
        scale: range of normalised coordinates (default 2π).
    """

    def __init__(self, num_pos_feats: int = 64, temperature: float = 10000.0, normalize: bool = False,
                 scale: Optional[float] = None):
        super().__init__()
        if scale is not None and not normalize:
            raise ValueError("PositionEmbeddingSine: normalize must be True if scale is passed")
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature
        self.normalize = normalize
        self.scale = 2 * math.pi if scale is None else scale

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """
        Args:
            x: ``B×C×H×W`` (only its shape, device and dtype are used).
            mask: optional ``B×H×W`` bool, True = padding (excluded from the coordinates).
        Returns:
            ``B×(2·num_pos_feats)×H×W`` in ``x``'s dtype.
        """
        if mask is None:
            mask = torch.zeros((x.size(0), x.size(2), x.size(3)), device=x.device, dtype=torch.bool)
        not_mask = (~mask).to(torch.float32)
        y_embed = not_mask.cumsum(1)
        x_embed = not_mask.cumsum(2)
        if self.normalize:
            eps = 1e-6
            # Mask2Former / MaskDINO convention: pixel i (0-based) sits at (i + 1) / H.
            y_embed = y_embed / (y_embed[:, -1:, :] + eps) * self.scale
            x_embed = x_embed / (x_embed[:, :, -1:] + eps) * self.scale
        dim_t = _frequencies(self.num_pos_feats, self.temperature, x.device)
        pos_x = _interleave_sin_cos(x_embed[:, :, :, None] / dim_t)
        pos_y = _interleave_sin_cos(y_embed[:, :, :, None] / dim_t)
        pos = torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)
        return pos.to(x.dtype)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(num_pos_feats={self.num_pos_feats}, temperature={self.temperature}, "
                f"normalize={self.normalize}, scale={self.scale:.4f})")


def gen_sineembed_for_position(pos_tensor: torch.Tensor, num_pos_feats: int = 128,
                               temperature: float = 10000.0, scale: float = 2 * math.pi) -> torch.Tensor:
    """Sine embedding of normalised points or boxes (DINO's ``gen_sineembed_for_position``).

    Args:
        pos_tensor: ``...×2`` (cx, cy) or ``...×4`` (cx, cy, w, h) in [0, 1].
        num_pos_feats: features per coordinate.
    Returns:
        ``...×(2·num_pos_feats)`` ordered ``[y, x]``, or ``...×(4·num_pos_feats)`` ordered
        ``[y, x, w, h]``, in ``pos_tensor``'s dtype.
    """
    n = pos_tensor.size(-1)
    if n not in (2, 4):
        raise ValueError(f"gen_sineembed_for_position: last dim must be 2 or 4, got {tuple(pos_tensor.shape)}")
    dim_t = _frequencies(num_pos_feats, temperature, pos_tensor.device)
    coords = pos_tensor.to(torch.float32) * scale
    parts = [_interleave_sin_cos(coords[..., i, None] / dim_t) for i in range(n)]
    # DINO order: y before x; w, h after.
    parts[0], parts[1] = parts[1], parts[0]
    return torch.cat(parts, dim=-1).to(pos_tensor.dtype)
