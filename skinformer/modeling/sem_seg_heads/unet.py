"""U-Net decoder over a backbone's pyramid, with optional attention gates and residual blocks."""
from typing import Dict, List, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from skinformer.config import configurable
from skinformer.layers import ShapeSpec

from .build import SEM_SEG_HEAD_REGISTRY
from .common import conv_norm_act, init_predictor

__all__ = ["AttentionGate", "ConvBlock", "UNetHead"]


class AttentionGate(nn.Module):
    """Attention U-Net gate: ``skip * sigmoid(norm(psi(relu(W_g g + W_x skip))))``.

    ``skip``: B×C_s×H×W, ``gate``: B×C_g×H×W (the upsampled decoder state) -> B×C_s×H×W.
    """

    def __init__(self, skip_channels: int, gate_channels: int, inter_channels: int, norm: str = "BN"):
        super().__init__()
        self.w_skip = nn.Conv2d(skip_channels, inter_channels, kernel_size=1)
        self.w_gate = nn.Conv2d(gate_channels, inter_channels, kernel_size=1)
        self.psi = conv_norm_act(inter_channels, 1, 1, norm=norm, activation=False)

    def forward(self, skip: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        attn = torch.sigmoid(self.psi(F.relu(self.w_skip(skip) + self.w_gate(gate))))
        return skip * attn


class ConvBlock(nn.Module):
    """Two 3×3 conv+norm+ReLU; with ``residual`` a (1×1-projected) identity is added before the last ReLU."""

    def __init__(self, in_channels: int, out_channels: int, norm: str = "BN", residual: bool = False):
        super().__init__()
        self.conv1 = conv_norm_act(in_channels, out_channels, 3, norm=norm)
        self.conv2 = conv_norm_act(out_channels, out_channels, 3, norm=norm, activation=not residual)
        self.shortcut = None
        if residual:
            self.shortcut = (nn.Identity() if in_channels == out_channels
                             else conv_norm_act(in_channels, out_channels, 1, norm=norm, activation=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(self.conv1(x))
        if self.shortcut is not None:
            y = F.relu(y + self.shortcut(x))
        return y


@SEM_SEG_HEAD_REGISTRY.register()
class UNetHead(nn.Module):
    """U-Net decoder: starting from the deepest feature, each up block upsamples (bilinear) to the
    next shallower feature, optionally gates that skip with an attention gate, concatenates and
    applies a :class:`ConvBlock`. When ``common_stride`` is finer than the shallowest feature
    (e.g. 1), skip-less ×2 up blocks follow. A 1×1 classifier gives the logits.

    Args:
        input_shape: shapes of the features to use (at least two strides).
        num_classes: output channels (``NUM_CLASSES + 1``).
        decoder_channels: width of each up block, deepest first.
        common_stride: stride of the output (a power of two, <= the shallowest feature stride).
        norm, attention_gates, residual: see :class:`ConvBlock` / :class:`AttentionGate`.

    ``forward(features) -> B×num_classes×H/common_stride×W/common_stride``.
    """

    @configurable
    def __init__(self, input_shape: Dict[str, ShapeSpec], *, num_classes: int,
                 decoder_channels: Sequence[int] = (256, 128, 64, 32, 16), common_stride: int = 4,
                 norm: str = "BN", attention_gates: bool = False, residual: bool = False):
        super().__init__()
        items = sorted(input_shape.items(), key=lambda kv: -kv[1].stride)  # deepest first
        self.in_features: List[str] = [k for k, _ in items]
        finest = items[-1][1].stride
        if common_stride > finest or finest % common_stride != 0 or (finest // common_stride) & (finest // common_stride - 1):
            raise ValueError(f"UNetHead: COMMON_STRIDE={common_stride} must be a power-of-two divisor of the "
                             f"finest feature stride {finest}")
        num_extra = (finest // common_stride).bit_length() - 1
        num_blocks = len(items) - 1 + num_extra
        if len(decoder_channels) < num_blocks:
            raise ValueError(f"UNetHead needs {num_blocks} entries in UNET_DECODER_CHANNELS ({len(items) - 1} skip "
                             f"blocks + {num_extra} to reach stride {common_stride}), got {list(decoder_channels)}")
        self.common_stride = common_stride
        channels = items[0][1].channels
        self.blocks = nn.ModuleList()
        self.gates = nn.ModuleList()
        for i, (_, shape) in enumerate(items[1:]):
            out = decoder_channels[i]
            self.gates.append(AttentionGate(shape.channels, channels, max(shape.channels // 2, 1), norm=norm)
                              if attention_gates else nn.Identity())
            self.blocks.append(ConvBlock(channels + shape.channels, out, norm=norm, residual=residual))
            channels = out
        self.extra_blocks = nn.ModuleList()
        for i in range(num_extra):
            out = decoder_channels[len(items) - 1 + i]
            self.extra_blocks.append(ConvBlock(channels, out, norm=norm, residual=residual))
            channels = out
        self.attention_gates = attention_gates
        self.predictor = init_predictor(nn.Conv2d(channels, num_classes, kernel_size=1))

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        h = cfg.MODEL.SEM_SEG_HEAD
        return {
            "input_shape": {k: v for k, v in input_shape.items() if k in h.IN_FEATURES},
            "num_classes": h.NUM_CLASSES + 1,
            "decoder_channels": list(h.UNET_DECODER_CHANNELS),
            "common_stride": h.COMMON_STRIDE,
            "norm": h.NORM,
            "attention_gates": h.UNET_ATTENTION_GATES,
            "residual": h.UNET_RESIDUAL,
        }

    def forward(self, features: Dict[str, torch.Tensor]) -> torch.Tensor:
        x = features[self.in_features[0]]
        for name, gate, block in zip(self.in_features[1:], self.gates, self.blocks):
            skip = features[name]
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            if self.attention_gates:
                skip = gate(skip, x)
            x = block(torch.cat([x, skip], dim=1))
        for block in self.extra_blocks:
            x = block(F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False))
        return self.predictor(x)
