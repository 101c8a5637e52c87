from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F

__all__ = ["ImageList"]


class ImageList:
    """A batch of images of different sizes padded into one tensor.

    Attributes:
        tensor: ``B×C×H×W`` padded batch.
        image_sizes: the ``(h, w)`` of each image before padding.
    """

    def __init__(self, tensor: torch.Tensor, image_sizes: List[Tuple[int, int]]):
        self.tensor = tensor
        self.image_sizes = image_sizes

    def __len__(self) -> int:
        return len(self.image_sizes)

    def __getitem__(self, idx: int) -> torch.Tensor:
        h, w = self.image_sizes[idx]
        return self.tensor[idx, ..., :h, :w]

    def to(self, *args, **kwargs) -> "ImageList":
        """Return a new ``ImageList`` with the tensor moved/cast via ``torch.Tensor.to`` (sizes unchanged)."""
        return ImageList(self.tensor.to(*args, **kwargs), self.image_sizes)

    @property
    def device(self) -> torch.device:
        """Device of the padded batch tensor."""
        return self.tensor.device

    @staticmethod
    def from_tensors(tensors: Sequence[torch.Tensor], size_divisibility: int = 0,
                     pad_value: float = 0.0) -> "ImageList":
        """Pad ``C×H×W`` (or ``H×W``) tensors to the batch max size, rounded up to ``size_divisibility``."""
        assert len(tensors) > 0
        image_sizes = [(int(t.shape[-2]), int(t.shape[-1])) for t in tensors]
        max_h = max(s[0] for s in image_sizes)
        max_w = max(s[1] for s in image_sizes)
        if size_divisibility > 1:
            max_h = (max_h + size_divisibility - 1) // size_divisibility * size_divisibility
            max_w = (max_w + size_divisibility - 1) // size_divisibility * size_divisibility
        if len(tensors) == 1:
            h, w = image_sizes[0]
            batched = F.pad(tensors[0], (0, max_w - w, 0, max_h - h), value=pad_value).unsqueeze(0)
        else:
            shape = (len(tensors),) + tuple(tensors[0].shape[:-2]) + (max_h, max_w)
            batched = tensors[0].new_full(shape, pad_value)
            for img, pad in zip(tensors, batched):
                pad[..., : img.shape[-2], : img.shape[-1]].copy_(img)
        return ImageList(batched.contiguous(), image_sizes)
