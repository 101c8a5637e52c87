"""A traceable ``image tensor -> scores`` module around a skinformer model.

The meta-architectures take ``list[dict]`` and compute padding and crops from Python ints,
which a tracer freezes to the example's size. The wrapper therefore runs the network on a fixed
``export_size × export_size`` input (every internal shape is a constant) and keeps the image size
dynamic only at its two ends: a bilinear resize of the input to the export size and of the
scores back to the input's size, both of which the tracers record symbolically.
"""
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import nn

from skinformer.layers.ms_deform_attn import MSDeformAttn

__all__ = ["ExportableSegmentor", "use_pytorch_deformable_attention"]


def use_pytorch_deformable_attention(model: nn.Module) -> int:
    """Switch every :class:`MSDeformAttn` in ``model`` to the ``grid_sample`` reference, which
    exporters understand (the C++/CUDA kernels are opaque custom ops). Returns how many."""
    count = 0
    for module in model.modules():
        if isinstance(module, MSDeformAttn):
            module.backend = "pytorch"
            count += 1
    return count


class ExportableSegmentor(nn.Module):
    """``forward(image 1×3×H×W float, 0..255, INPUT.FORMAT channel order) -> 1×K×H×W scores``.

    Args:
        model: a semantic model in eval mode whose outputs hold ``"sem_seg"`` (K×H×W).
        export_size: side of the square the network runs at; a multiple of the model's
            ``size_divisibility`` so that no padding is involved.
    """

    def __init__(self, model: nn.Module, export_size: int):
        super().__init__()
        self.model = model
        self.export_size = int(export_size)

    @property
    def network_size(self) -> Tuple[int, int]:
        """``(height, width)`` the network runs at, whatever the input size."""
        return self.export_size, self.export_size

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """``1×3×H×W`` image -> ``1×K×H×W`` scores: resized to the network size and back."""
        s = self.export_size
        x = F.interpolate(image, size=(s, s), mode="bilinear", align_corners=False)[0]
        scores = self.model([{"image": x, "height": s, "width": s}])[0]["sem_seg"]
        return F.interpolate(scores[None], size=image.shape[-2:], mode="bilinear", align_corners=False)
