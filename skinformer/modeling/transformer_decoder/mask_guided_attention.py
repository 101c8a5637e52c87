"""Mask-guided deformable cross-attention (SiMaskFormer AMR, ``TYPE_SAMPLING_LOCATIONS``).

Deformable-DETR cross-attention (:class:`skinformer.layers.MSDeformAttn`) whose sampling box and
attention logits follow each query's current mask reference ``m = (R > 0)`` at 1/4 resolution
(AMR, ``docs/simaskformer.md``):

* ``"mask"``: every point samples inside the tight box of ``m`` (the same box at every level:
  ``loc = (cx, cy) + offset / n_points · (w, h) · 0.5``) and is *gated* by ``m``: the nearest
  1/4-grid pixel of its location is looked up in ``m`` (one gather for all queries, heads,
  levels and points). Corrected gating: the logits of points outside the mask are set to −inf
  before the softmax, so they get exactly zero weight; a (query, head) row whose points are all
  outside stays ungated (uniform-by-logit instead of NaN). Points outside the image count as
  outside. ``multiplicative_gate=True`` reproduces the original implementation (difference D3): logits are
  *multiplied* by inside ∈ {0, 1}
  (outside points keep logit 0, they are only down-weighted) and the pixel index is truncated
  and clamped, so points outside the image inherit the border pixel.
* ``"bbox"``: every point samples inside the predicted box sigmoid(b); no gating.
* ``"both"``: even-indexed points sample inside the predicted box (ungated), odd-indexed points
  inside the mask box, gated as in "mask".
"""
from typing import Callable, Optional

import torch
import torch.nn as nn

from skinformer.layers import MSDeformAttn, multi_scale_deformable_attn

__all__ = ["MaskGuidedDeformableAttention", "nearest_pixel_inside", "gate_attention_logits", "SAMPLING_TYPES"]


def nearest_pixel_inside(mask: torch.Tensor, locations: torch.Tensor, truncate: bool = False) -> torch.Tensor:
    """Whether each sampling location falls on a foreground pixel of its query's mask.

    Args:
        mask: ``B×Nq×H×W`` bool, or float logits R (foreground = R > 0; read at the gathered
            pixels only, no full-resolution bool temporary).
        locations: ``B×Nq×...×2`` normalised (x, y) in [0, 1] (e.g. ``B×Nq×M×L×P×2``).
        truncate: the original implementation's lookup (D3): truncate toward zero and clamp into the
            image, so locations outside the image read the border pixel.
    Returns:
        ``B×Nq×...`` bool.
    """
    b, nq, h, w = mask.shape
    lead = locations.shape[:-1]
    x = locations[..., 0] * w
    y = locations[..., 1] * h
    if truncate:
        xi = x.trunc().long().clamp(0, w - 1)
        yi = y.trunc().long().clamp(0, h - 1)
        in_image = None
    else:
        xf, yf = x.floor(), y.floor()
        in_image = (xf >= 0) & (xf < w) & (yf >= 0) & (yf < h)
        xi = xf.long().clamp(0, w - 1)
        yi = yf.long().clamp(0, h - 1)
    index = (yi * w + xi).reshape(b, nq, -1)
    inside = mask.reshape(b, nq, h * w).gather(2, index).reshape(lead)
    if inside.dtype != torch.bool:
        inside = inside > 0
    return inside if in_image is None else inside & in_image


def gate_attention_logits(logits: torch.Tensor, inside: torch.Tensor, gated: Optional[torch.Tensor] = None,
                          multiply: bool = False) -> torch.Tensor:
    """Apply the mask gate to ``N×Lq×M×K`` attention logits (K = levels·points) before the softmax.

    Args:
        inside: ``N×Lq×M×K`` bool, location on the mask.
        gated: optional ``K`` bool, which points are gated at all (None = all).
        multiply: the original implementation's gate (D3): logits × inside, outside points keep logit 0.
    """
    if gated is not None:
        inside = inside | ~gated
    if multiply:
        return logits * inside.to(logits.dtype)
    # Leave rows with no point inside ungated: an all −inf softmax would be NaN.
    blocked = ~inside & inside.any(dim=-1, keepdim=True)
    return logits.masked_fill(blocked, float("-inf"))


class MaskGuidedDeformableAttention(nn.Module):
    """Deformable cross-attention sampling inside the mask box / predicted box, gated by the mask.

    Args:
        d_model, n_levels, n_heads, n_points: as :class:`MSDeformAttn`.
        sampling: "mask" | "bbox" | "both" (see the module docstring).
        multiplicative_gate: the original implementation's gating (difference D3): multiplied logits
            and the truncating pixel lookup.
    """

    def __init__(self, d_model: int = 256, n_levels: int = 3, n_heads: int = 8, n_points: int = 8,
                 sampling: str = "mask", multiplicative_gate: bool = False):
        super().__init__()
        if sampling not in SAMPLING_TYPES:
            raise ValueError(
                f"MODEL.SIMASKFORMER.TYPE_SAMPLING_LOCATIONS: unknown value '{sampling}', "
                f"expected one of {sorted(SAMPLING_TYPES)}"
            )
        if sampling == "both" and n_points % 2:
            raise ValueError(f"TYPE_SAMPLING_LOCATIONS 'both' needs an even DEC_N_POINTS, got {n_points}")
        self.attn = MSDeformAttn(d_model, n_levels, n_heads, n_points)
        self.n_levels = n_levels
        self.n_points = n_points
        self.sampling = sampling
        self.multiplicative_gate = multiplicative_gate

    def _reset_parameters(self) -> None:
        reset = getattr(self.attn, "_reset_parameters", None) or getattr(self.attn, "reset_parameters", None)
        if reset is not None:
            reset()

    def _mask_gate(self, mask: torch.Tensor, gated: Optional[torch.Tensor] = None) -> Callable:
        original = self.multiplicative_gate

        def fn(logits: torch.Tensor, sampling_locations: torch.Tensor) -> torch.Tensor:
            inside = nearest_pixel_inside(mask, sampling_locations, truncate=original)  # N×Lq×M×L×P
            return gate_attention_logits(logits, inside.flatten(-2), gated, multiply=original)

        return fn

    def forward(self, query: torch.Tensor, memory: torch.Tensor, spatial_shapes: torch.Tensor,
                level_start_index: torch.Tensor, pred_boxes: torch.Tensor, mask_boxes: Optional[torch.Tensor],
                mask: Optional[torch.Tensor]) -> torch.Tensor:
        """
        Args:
            query: ``B×Nq×C`` (content + positional query).
            memory: ``B×S×C`` flattened multi-scale features.
            spatial_shapes: ``L×2``; level_start_index: ``L``.
            pred_boxes: ``B×Nq×4`` sigmoid cxcywh of the query boxes (used by "bbox" / "both").
            mask_boxes: ``B×Nq×4`` cxcywh tight boxes of ``mask`` (used by "mask" / "both").
            mask: ``B×Nq×H×W`` mask references: bool, or logits R (foreground R > 0) (used by
                "mask" / "both").
        Returns:
            ``B×Nq×C``.
        """
        return getattr(self, SAMPLING_TYPES[self.sampling])(query, memory, spatial_shapes, level_start_index,
                                                            pred_boxes, mask_boxes, mask)

    def _per_level(self, boxes: torch.Tensor) -> torch.Tensor:
        return boxes[:, :, None, :].expand(-1, -1, self.n_levels, -1)

    def _forward_mask(self, query, memory, spatial_shapes, level_start_index, pred_boxes, mask_boxes, mask):
        return self.attn(query, self._per_level(mask_boxes), memory, spatial_shapes, level_start_index,
                         attention_logit_fn=self._mask_gate(mask))

    def _forward_bbox(self, query, memory, spatial_shapes, level_start_index, pred_boxes, mask_boxes, mask):
        return self.attn(query, self._per_level(pred_boxes), memory, spatial_shapes, level_start_index)

    def _forward_both(self, query, memory, spatial_shapes, level_start_index, pred_boxes, mask_boxes, mask):
        # MSDeformAttn takes one reference box per level, not per point, so this mode evaluates the
        # attention from the op's own projections with per-point references (even points: the
        # predicted box, odd points: the mask box) and calls the functional op.
        attn = self.attn
        b, nq, _ = query.shape
        m, lv, p = attn.n_heads, attn.n_levels, attn.n_points
        value = attn.value_proj(memory).view(b, memory.shape[1], m, -1)
        offsets = attn.sampling_offsets(query).view(b, nq, m, lv, p, 2)
        odd = (torch.arange(p, device=query.device) % 2 == 1)
        refs = torch.where(odd[:, None], mask_boxes[:, :, None, None, None, :],
                           pred_boxes[:, :, None, None, None, :])  # B×Nq×1×1×P×4
        locations = refs[..., :2] + offsets / p * refs[..., 2:] * 0.5
        logits = attn.attention_weights(query).view(b, nq, m, lv * p)
        gated = odd.repeat(lv)  # K = levels·points, level-major
        logits = self._mask_gate(mask, gated)(logits, locations)
        weights = logits.softmax(-1).view(b, nq, m, lv, p)
        out = multi_scale_deformable_attn(value, spatial_shapes, level_start_index, locations, weights,
                                          backend=attn.backend)
        return attn.output_proj(out)


# TYPE_SAMPLING_LOCATIONS -> forward method.
SAMPLING_TYPES = {
    "mask": "_forward_mask",
    "bbox": "_forward_bbox",
    "both": "_forward_both",
}
