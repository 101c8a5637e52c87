from typing import List, Sequence

import numpy as np
import torch

from .boxes import Boxes, masks_to_boxes

__all__ = ["BitMasks", "polygons_to_bitmask"]


def polygons_to_bitmask(polygons: Sequence[Sequence[float]], height: int, width: int) -> np.ndarray:
    """Rasterise COCO polygons (lists of x0,y0,x1,y1,...) into an ``H×W`` bool mask."""
    from pycocotools import mask as mask_util

    polygons = [np.asarray(p, dtype=np.float64).ravel() for p in polygons if len(p) >= 6]
    if len(polygons) == 0:
        return np.zeros((height, width), dtype=bool)
    rles = mask_util.frPyObjects([p.tolist() for p in polygons], height, width)
    rle = mask_util.merge(rles)
    return mask_util.decode(rle).astype(bool)


class BitMasks:
    """``N×H×W`` boolean masks of one image."""

    def __init__(self, tensor):
        if isinstance(tensor, np.ndarray):
            tensor = torch.from_numpy(tensor)
        tensor = torch.as_tensor(tensor).to(torch.bool)
        assert tensor.dim() == 3, tensor.size()
        self.tensor = tensor
        self.image_size = tensor.shape[1:]

    def to(self, *args, **kwargs) -> "BitMasks":
        """Return new ``BitMasks`` with the tensor moved/cast via ``torch.Tensor.to``."""
        return BitMasks(self.tensor.to(*args, **kwargs))

    @property
    def device(self):
        """Device of the underlying mask tensor."""
        return self.tensor.device

    def __getitem__(self, item) -> "BitMasks":
        if isinstance(item, int):
            return BitMasks(self.tensor[item].unsqueeze(0))
        return BitMasks(self.tensor[item])

    def __len__(self) -> int:
        return self.tensor.shape[0]

    def nonempty(self) -> torch.Tensor:
        """Return an ``N`` bool mask of masks with at least one foreground pixel."""
        return self.tensor.flatten(1).any(dim=1)

    def area(self) -> torch.Tensor:
        """Return the ``N`` foreground pixel counts (int64)."""
        return self.tensor.flatten(1).sum(dim=1)

    def get_bounding_boxes(self) -> Boxes:
        """Tight xyxy boxes ``[x0, y0, x1+1, y1+1]``; all zeros for empty masks."""
        return Boxes(masks_to_boxes(self.tensor))

    @staticmethod
    def from_polygon_masks(polygons: List[List[Sequence[float]]], height: int, width: int) -> "BitMasks":
        """Rasterise per-instance COCO polygons into ``N×height×width`` masks.

        Args:
            polygons: one list of polygons (flat ``x0, y0, x1, y1, ...``) per instance, merged into one mask.
        """
        arr = [polygons_to_bitmask(p, height, width) for p in polygons]
        if len(arr) == 0:
            return BitMasks(torch.zeros((0, height, width), dtype=torch.bool))
        return BitMasks(torch.from_numpy(np.stack(arr)))

    @staticmethod
    def cat(masks_list: List["BitMasks"]) -> "BitMasks":
        """Concatenate a non-empty list of ``BitMasks`` of the same image size along the instance dimension."""
        return BitMasks(torch.cat([m.tensor for m in masks_list], dim=0))

    def __repr__(self) -> str:
        return f"BitMasks(num_instances={len(self)}, size={tuple(self.image_size)})"
