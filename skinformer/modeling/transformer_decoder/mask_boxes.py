"""Boxes of mask references, and the logit helper shared by SiMaskFormer's decoder parts.

SiMaskFormer derives boxes from mask logits in three places: the initial query box
(``INITIALIZE_BOX_TYPE``), the box the mask-guided cross-attention samples in (and the query
centre of binary semantic models), and the denoising box of a noised GT mask. The original implementation uses two
conventions with a half-pixel disagreement and degenerate boxes for empty masks
(``docs/simaskformer.md``, differences D4, D21); ``original_convention=True`` reproduces them.

All functions are vectorised over any leading dimensions: masks ``...×H×W`` (bool) ->
boxes ``...×4`` (cx, cy, w, h) normalised by (W, H, W, H). Masks may also be given as float logits
(foreground = logit > 0), which avoids a full-resolution bool temporary.
"""
from typing import Tuple

import torch

__all__ = [
    "inverse_sigmoid",
    "mask_extents",
    "mask_boxes_cxcywh",
    "bitmask_boxes_cxcywh",
    "mask2box_boxes_cxcywh",
    "MASK_BOX_INIT",
]


def inverse_sigmoid(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """``log(x / (1 - x))`` with ``x`` clamped to [0, 1] and both terms to at least ``eps``."""
    x = x.clamp(min=0, max=1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))


def _extents(rows: torch.Tensor, cols: torch.Tensor):
    h, w = rows.shape[-1], cols.shape[-1]
    ar_h = torch.arange(h, device=rows.device)
    ar_w = torch.arange(w, device=cols.device)
    y0 = torch.where(rows, ar_h, h).amin(dim=-1)
    y1 = torch.where(rows, ar_h, 0).amax(dim=-1)
    x0 = torch.where(cols, ar_w, w).amin(dim=-1)
    x1 = torch.where(cols, ar_w, 0).amax(dim=-1)
    return x0.float(), y0.float(), x1.float(), y1.float(), rows.any(dim=-1)


def mask_extents(masks: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor,
                                                torch.Tensor]:
    """Pixel-index extents of ``...×H×W`` masks: bool, or float logits (foreground = logit > 0).

    Returns float tensors ``x0, y0, x1, y1`` (inclusive min / max indices, shape ``...``) and the
    bool ``nonempty``. For an empty mask the extents are the original implementation's sentinels x0 = W, x1 = 0
    (y0 = H, y1 = 0), which is what makes its empty-mask box degenerate.
    """
    if masks.dtype == torch.bool:
        return _extents(masks.any(dim=-1), masks.any(dim=-2))
    # Logits: a row has a foreground pixel iff its max logit is > 0 (no H×W bool temporary).
    return _extents(masks.amax(dim=-1) > 0, masks.amax(dim=-2) > 0)


def _whole_image_where_empty(boxes: torch.Tensor, nonempty: torch.Tensor) -> torch.Tensor:
    # Sane default for an empty mask: the whole image (sampling spreads over the image and the
    # positional query sits at the centre) instead of a mirrored, negative-size box.
    whole = boxes.new_tensor([0.5, 0.5, 1.0, 1.0])
    return torch.where(nonempty[..., None], boxes, whole)


def mask_boxes_cxcywh(masks: torch.Tensor, original_convention: bool = False) -> torch.Tensor:
    """Tight box of each mask (the sampling box of mask-guided attention, the DN box).

    Corrected: pixel-edge convention, cx = (x0 + x1 + 1) / 2 / W, w = (x1 - x0 + 1) / W, and the
    whole image for an empty mask. ``original_convention`` (D21, D4): the original implementation's
    ``get_bounding_boxes``,
    cx = (x0 + x1) / 2 / W (half a pixel left of the edge convention) and, for an empty mask,
    cx = cy = 0.5 with w = -(W - 1) / W, h = -(H - 1) / H (negative: a mirrored sampling pattern).
    """
    h, w = masks.shape[-2:]
    x0, y0, x1, y1, nonempty = mask_extents(masks)
    off = 0.0 if original_convention else 1.0
    boxes = torch.stack([(x0 + x1 + off) / (2 * w), (y0 + y1 + off) / (2 * h),
                         (x1 - x0 + 1) / w, (y1 - y0 + 1) / h], dim=-1)
    return boxes if original_convention else _whole_image_where_empty(boxes, nonempty)


def bitmask_boxes_cxcywh(masks: torch.Tensor, original_convention: bool = False) -> torch.Tensor:
    """``BitMasks.get_bounding_boxes`` ([x0, y0, x1+1, y1+1]) as normalised cxcywh.

    Empty masks: the whole image; ``original_convention`` (D4): all zeros (logit -11.5 after inverse_sigmoid).
    """
    h, w = masks.shape[-2:]
    x0, y0, x1, y1, nonempty = mask_extents(masks)
    boxes = torch.stack([(x0 + x1 + 1) / (2 * w), (y0 + y1 + 1) / (2 * h),
                         (x1 + 1 - x0) / w, (y1 + 1 - y0) / h], dim=-1)
    if original_convention:
        return torch.where(nonempty[..., None], boxes, torch.zeros_like(boxes))
    return _whole_image_where_empty(boxes, nonempty)


def mask2box_boxes_cxcywh(masks: torch.Tensor, original_convention: bool = False) -> torch.Tensor:
    """MaskDINO's ``masks_to_boxes`` ([x0, y0, x1, y1] inclusive indices) as normalised cxcywh.

    Empty masks get the whole image under either convention (MaskDINO's value there is undefined);
    ``original_convention`` is accepted so every :data:`MASK_BOX_INIT` entry is called alike.
    """
    h, w = masks.shape[-2:]
    x0, y0, x1, y1, nonempty = mask_extents(masks)
    boxes = torch.stack([(x0 + x1) / (2 * w), (y0 + y1) / (2 * h), (x1 - x0) / w, (y1 - y0) / h], dim=-1)
    return _whole_image_where_empty(boxes, nonempty)


# INITIALIZE_BOX_TYPE -> how the initial query box is derived from the initial mask logits
# (None = keep the two-stage box head's prediction).
MASK_BOX_INIT = {
    "bitmask": bitmask_boxes_cxcywh,
    "mask2box": mask2box_boxes_cxcywh,
    "no": None,
}
