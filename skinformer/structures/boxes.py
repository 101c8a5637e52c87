from typing import List

import torch

__all__ = [
    "Boxes", "box_xyxy_to_cxcywh", "box_cxcywh_to_xyxy", "box_area", "pairwise_iou",
    "generalized_box_iou", "masks_to_boxes",
]


def box_xyxy_to_cxcywh(b: torch.Tensor) -> torch.Tensor:
    """``...×4`` (x0, y0, x1, y1) -> (cx, cy, w, h)."""
    x0, y0, x1, y1 = b.unbind(-1)
    return torch.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], dim=-1)


def box_cxcywh_to_xyxy(b: torch.Tensor) -> torch.Tensor:
    """``...×4`` (cx, cy, w, h) -> (x0, y0, x1, y1)."""
    cx, cy, w, h = b.unbind(-1)
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)


def box_area(b: torch.Tensor) -> torch.Tensor:
    """Area of ``...×4`` xyxy boxes."""
    return (b[..., 2] - b[..., 0]).clamp(min=0) * (b[..., 3] - b[..., 1]).clamp(min=0)


def _box_inter_union(a: torch.Tensor, b: torch.Tensor):
    area_a, area_b = box_area(a), box_area(b)
    lt = torch.max(a[:, None, :2], b[None, :, :2])
    rb = torch.min(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None, :] - inter
    return inter, union


def pairwise_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU between ``N×4`` and ``M×4`` xyxy boxes -> ``N×M`` (0 where the union is empty)."""
    inter, union = _box_inter_union(a, b)
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))


def generalized_box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Generalised IoU (Rezatofighi et al.) between ``N×4`` and ``M×4`` xyxy boxes -> ``N×M``.

    Degenerate boxes (x1 < x0) are allowed; they get an area of 0, so no NaN is produced.
    """
    inter, union = _box_inter_union(a, b)
    iou = inter / union.clamp(min=1e-7)
    lt = torch.min(a[:, None, :2], b[None, :, :2])
    rb = torch.max(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    area = wh[..., 0] * wh[..., 1]
    return iou - (area - union) / area.clamp(min=1e-7)


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """Tight xyxy boxes ``[x0, y0, x1+1, y1+1]`` of ``N×H×W`` boolean masks; all zeros for empty masks."""
    if masks.numel() == 0:
        return torch.zeros((masks.shape[0], 4), dtype=torch.float32, device=masks.device)
    masks = masks.bool()
    n, h, w = masks.shape
    rows = masks.any(dim=2)
    cols = masks.any(dim=1)
    ar_h = torch.arange(h, device=masks.device)
    ar_w = torch.arange(w, device=masks.device)
    big = max(h, w) + 1
    y0 = torch.where(rows, ar_h, big).min(dim=1).values
    y1 = torch.where(rows, ar_h, -1).max(dim=1).values + 1
    x0 = torch.where(cols, ar_w, big).min(dim=1).values
    x1 = torch.where(cols, ar_w, -1).max(dim=1).values + 1
    boxes = torch.stack([x0, y0, x1, y1], dim=1).float()
    empty = ~rows.any(dim=1)
    boxes[empty] = 0
    return boxes


class Boxes:
    """``N×4`` boxes in absolute xyxy pixel coordinates."""

    def __init__(self, tensor: torch.Tensor):
        tensor = torch.as_tensor(tensor, dtype=torch.float32)
        if tensor.numel() == 0:
            tensor = tensor.reshape(-1, 4)
        assert tensor.dim() == 2 and tensor.size(-1) == 4, tensor.size()
        self.tensor = tensor

    def clone(self) -> "Boxes":
        """Return a deep copy (the underlying tensor is cloned)."""
        return Boxes(self.tensor.clone())

    def to(self, *args, **kwargs) -> "Boxes":
        """Return new ``Boxes`` with the tensor moved/cast via ``torch.Tensor.to``."""
        return Boxes(self.tensor.to(*args, **kwargs))

    @property
    def device(self):
        """Device of the underlying tensor."""
        return self.tensor.device

    def area(self) -> torch.Tensor:
        """Return the ``N`` box areas in pixels² (negative widths/heights count as 0)."""
        return box_area(self.tensor)

    def clip(self, box_size) -> None:
        """Clamp the boxes in place to an image of size ``box_size = (h, w)``: x to ``[0, w]``, y to ``[0, h]``."""
        h, w = box_size
        self.tensor[:, 0].clamp_(0, w)
        self.tensor[:, 1].clamp_(0, h)
        self.tensor[:, 2].clamp_(0, w)
        self.tensor[:, 3].clamp_(0, h)

    def nonempty(self, threshold: float = 0.0) -> torch.Tensor:
        """Return an ``N`` bool mask of boxes whose width and height are both strictly greater than ``threshold``."""
        w = self.tensor[:, 2] - self.tensor[:, 0]
        h = self.tensor[:, 3] - self.tensor[:, 1]
        return (w > threshold) & (h > threshold)

    def scale(self, scale_x: float, scale_y: float) -> None:
        """Scale the boxes in place: x coordinates by ``scale_x``, y coordinates by ``scale_y``."""
        self.tensor[:, 0::2] *= scale_x
        self.tensor[:, 1::2] *= scale_y

    def __getitem__(self, item) -> "Boxes":
        if isinstance(item, int):
            return Boxes(self.tensor[item].view(1, -1))
        return Boxes(self.tensor[item])

    def __len__(self) -> int:
        return self.tensor.shape[0]

    def __repr__(self) -> str:
        return f"Boxes({self.tensor})"

    @classmethod
    def cat(cls, boxes_list: List["Boxes"]) -> "Boxes":
        """Concatenate a list of ``Boxes`` into one; an empty list gives ``0×4`` boxes."""
        if len(boxes_list) == 0:
            return cls(torch.empty(0, 4))
        return cls(torch.cat([b.tensor for b in boxes_list], dim=0))
