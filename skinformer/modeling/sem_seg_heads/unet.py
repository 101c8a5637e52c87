"""U-Net decoder over a backbone's pyramid, with optional attention gates, residual blocks,
transposed-conv up-sampling and dilated side branches (the Inception-v3 U-Net's ASPP-like block)."""
from typing import Dict, List, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from skinformer.config import configurable
from skinformer.layers import ShapeSpec

from .build import SEM_SEG_HEAD_REGISTRY
from .common import conv_norm_act, head_arguments, init_predictor

__all__ = ["AttentionGate", "ConvBlock", "DilatedBranches", "UNetHead"]

_UPSAMPLE_MODES = ("bilinear", "transposed")


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
        """Gate ``skip`` (``B×C×H×W``) by attention from ``gate`` of the same size: ``B×C×H×W``."""
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
        """``B×C_in×H×W -> B×C_out×H×W``."""
        y = self.conv2(self.conv1(x))
        if self.shortcut is not None:
            y = F.relu(y + self.shortcut(x))
        return y


class DilatedBranches(nn.Module):
    """Parallel branches ``3×3 conv (dilation d) -> 3×3 conv -> 3×3 conv stride 2`` (each with norm
    + ReLU), concatenated: ``B×C_in×H×W -> B×(len(dilations)·channels)×H/2×W/2``. Used to enlarge the
    receptive field of a shallow feature before it joins the next deeper one.
    """

    def __init__(self, in_channels: int, channels: int, dilations: Sequence[int], norm: str = "BN"):
        super().__init__()
        self.branches = nn.ModuleList([
            nn.Sequential(
                conv_norm_act(in_channels, channels, 3, norm=norm, dilation=int(d)),
                conv_norm_act(channels, channels, 3, norm=norm),
                conv_norm_act(channels, channels, 3, norm=norm, stride=2),
            )
            for d in dilations
        ])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Branch outputs concatenated over channels: ``B×C×H×W -> B×(n·C_b)×H/2×W/2``."""
        return torch.cat([b(x) for b in self.branches], dim=1)


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
        upsample: "bilinear" (interpolation) or "transposed" (a learned 2×2 stride-2
            ``ConvTranspose2d`` per up block; the result is resized to the skip when sizes are odd).
        dropout: ``Dropout2d`` probability before the classifier.
        branch_feature, branch_dilations, branch_channels: if ``branch_feature`` is set, a
            :class:`DilatedBranches` on that feature is concatenated to the feature of twice its stride
            (which must be among the inputs) before decoding.

    ``forward(features) -> B×num_classes×H/common_stride×W/common_stride``.
    """

    @configurable
    def __init__(self, input_shape: Dict[str, ShapeSpec], *, num_classes: int,
                 decoder_channels: Sequence[int] = (256, 128, 64, 32, 16), common_stride: int = 4,
                 norm: str = "BN", attention_gates: bool = False, residual: bool = False,
                 upsample: str = "bilinear", dropout: float = 0.0, branch_feature: str = "",
                 branch_dilations: Sequence[int] = (2, 3, 4), branch_channels: int = 256):
        super().__init__()
        if upsample not in _UPSAMPLE_MODES:
            raise ValueError(f"MODEL.SEM_SEG_HEAD.UNET_UPSAMPLE='{upsample}' is unknown; expected one of {_UPSAMPLE_MODES}")
        input_shape = dict(input_shape)
        self.branch_feature, self.branch_target, self.branches = "", "", None
        if branch_feature:
            if branch_feature not in input_shape:
                raise ValueError(f"MODEL.SEM_SEG_HEAD.UNET_DILATED_BRANCHES.FEATURE='{branch_feature}' is not among the "
                                 f"head's features {sorted(input_shape)}")
            src = input_shape[branch_feature]
            target = next((k for k, v in input_shape.items() if v.stride == 2 * src.stride), None)
            if target is None:
                raise ValueError(f"UNET_DILATED_BRANCHES on '{branch_feature}' (stride {src.stride}) needs a feature of "
                                 f"stride {2 * src.stride} among IN_FEATURES {sorted(input_shape)} to join")
            self.branches = DilatedBranches(src.channels, branch_channels, branch_dilations, norm=norm)
            self.branch_feature, self.branch_target = branch_feature, target
            t = input_shape[target]
            input_shape[target] = ShapeSpec(channels=t.channels + branch_channels * len(branch_dilations), stride=t.stride)
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
        self.upsample = upsample
        channels = items[0][1].channels
        self.blocks = nn.ModuleList()
        self.gates = nn.ModuleList()
        self.ups = nn.ModuleList()
        for i, (_, shape) in enumerate(items[1:]):
            out = decoder_channels[i]
            self.ups.append(self._up(channels))
            self.gates.append(AttentionGate(shape.channels, channels, max(shape.channels // 2, 1), norm=norm)
                              if attention_gates else nn.Identity())
            self.blocks.append(ConvBlock(channels + shape.channels, out, norm=norm, residual=residual))
            channels = out
        self.extra_blocks = nn.ModuleList()
        self.extra_ups = nn.ModuleList()
        for i in range(num_extra):
            out = decoder_channels[len(items) - 1 + i]
            self.extra_ups.append(self._up(channels))
            self.extra_blocks.append(ConvBlock(channels, out, norm=norm, residual=residual))
            channels = out
        self.attention_gates = attention_gates
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.predictor = init_predictor(nn.Conv2d(channels, num_classes, kernel_size=1))

    def _up(self, channels: int) -> nn.Module:
        # Transposed conv keeps the width (the following ConvBlock changes it), as in milesial's U-Net
        # with bilinear=False up to the halving, which the ConvBlock does here.
        if self.upsample == "transposed":
            return nn.ConvTranspose2d(channels, channels, kernel_size=2, stride=2)
        return nn.Identity()

    def _upsample(self, up: nn.Module, x: torch.Tensor, size) -> torch.Tensor:
        x = up(x)
        if tuple(x.shape[-2:]) != tuple(size):
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return x

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        """Keyword arguments from ``cfg.MODEL.SEM_SEG_HEAD`` (``NUM_CLASSES + 1`` outputs)."""
        h = cfg.MODEL.SEM_SEG_HEAD
        return head_arguments(
            cfg, input_shape, decoder_channels=list(h.UNET_DECODER_CHANNELS), common_stride=h.COMMON_STRIDE,
            attention_gates=h.UNET_ATTENTION_GATES, residual=h.UNET_RESIDUAL, upsample=h.UNET_UPSAMPLE,
            dropout=h.UNET_DROPOUT, branch_feature=h.UNET_DILATED_BRANCHES.FEATURE,
            branch_dilations=list(h.UNET_DILATED_BRANCHES.DILATIONS), branch_channels=h.UNET_DILATED_BRANCHES.CHANNELS)

    def forward(self, features: Dict[str, torch.Tensor]) -> torch.Tensor:
        """Backbone features -> ``B×num_classes×H/common_stride×W/common_stride`` logits."""
        if self.branches is not None:
            features = dict(features)
            target = features[self.branch_target]
            side = self._upsample(nn.Identity(), self.branches(features[self.branch_feature]), target.shape[-2:])
            features[self.branch_target] = torch.cat([target, side], dim=1)
        x = features[self.in_features[0]]
        for name, up, gate, block in zip(self.in_features[1:], self.ups, self.gates, self.blocks):
            skip = features[name]
            x = self._upsample(up, x, skip.shape[-2:])
            if self.attention_gates:
                skip = gate(skip, x)
            x = block(torch.cat([x, skip], dim=1))
        for up, block in zip(self.extra_ups, self.extra_blocks):
            x = block(self._upsample(up, x, (x.shape[-2] * 2, x.shape[-1] * 2)))
        return self.predictor(self.dropout(x))
