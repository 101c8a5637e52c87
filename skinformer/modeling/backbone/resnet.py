"""ResNet in the detectron2 layout (the backbone SiMaskFormer and Mask2Former configs use).

Parameter names match detectron2 R-50 checkpoints::

    stem.conv1.weight, stem.conv1.norm.{weight,bias,running_mean,running_var}
    res2.0.conv1.weight, res2.0.conv1.norm.*, ..., res2.0.shortcut.weight, res2.0.shortcut.norm.*

so a converted detectron2 / torchvision checkpoint loads with no renaming.
:func:`convert_torchvision_resnet` maps torchvision (and timm, which uses the same names) ResNet
state dicts onto this layout.
"""
import logging
import re
from typing import Dict, List, Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from skinformer.layers import Conv2d, ShapeSpec, convert_frozen_batchnorm, get_norm

from .backbone import Backbone
from .build import BACKBONE_REGISTRY

__all__ = [
    "BasicStem",
    "BasicBlock",
    "BottleneckBlock",
    "ResNet",
    "build_resnet_backbone",
    "convert_torchvision_resnet",
]

logger = logging.getLogger(__name__)


def _c2_msra_fill(module: nn.Module) -> None:
    # detectron2's init for convs: Kaiming normal (fan_out) and zero bias.
    nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    if module.bias is not None:
        nn.init.constant_(module.bias, 0)


def _freeze_module(module: nn.Module) -> nn.Module:
    """Stop gradients into ``module`` and freeze its BatchNorms (statistics included)."""
    for p in module.parameters():
        p.requires_grad = False
    return convert_frozen_batchnorm(module)


class CNNBlockBase(nn.Module):
    """A block with ``in_channels``, ``out_channels`` and ``stride`` attributes and a ``freeze()``."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = stride

    def freeze(self) -> "CNNBlockBase":
        """Make the block non-trainable (no gradients, frozen BatchNorms); returns the block."""
        return _freeze_module(self)


class BasicBlock(CNNBlockBase):
    """Two 3×3 convs (ResNet-18/34). ``B×C_in×H×W -> B×C_out×H/s×W/s``."""

    def __init__(self, in_channels: int, out_channels: int, *, stride: int = 1, norm: str = "BN"):
        super().__init__(in_channels, out_channels, stride)
        if in_channels != out_channels or stride != 1:
            self.shortcut = Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False,
                                   norm=get_norm(norm, out_channels))
        else:
            self.shortcut = None
        self.conv1 = Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False,
                            norm=get_norm(norm, out_channels))
        self.conv2 = Conv2d(out_channels, out_channels, kernel_size=3, stride=1, padding=1, bias=False,
                            norm=get_norm(norm, out_channels))
        for layer in [self.conv1, self.conv2, self.shortcut]:
            if layer is not None:
                _c2_msra_fill(layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``B×C_in×H×W -> B×C_out×H/s×W/s``."""
        out = F.relu_(self.conv1(x))
        out = self.conv2(out)
        shortcut = self.shortcut(x) if self.shortcut is not None else x
        return F.relu_(out + shortcut)


class BottleneckBlock(CNNBlockBase):
    """1×1 → 3×3 (grouped, dilated) → 1×1 bottleneck (ResNet-50/101/152).

    ``stride_in_1x1=True`` puts the stride on the first 1×1 conv (MSRA / Caffe2 weights);
    ``False`` puts it on the 3×3 conv (torchvision weights, what SiMaskFormer uses).
    """

    def __init__(self, in_channels: int, out_channels: int, *, bottleneck_channels: int, stride: int = 1,
                 num_groups: int = 1, norm: str = "BN", stride_in_1x1: bool = False, dilation: int = 1):
        super().__init__(in_channels, out_channels, stride)
        if in_channels != out_channels or stride != 1:
            self.shortcut = Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False,
                                   norm=get_norm(norm, out_channels))
        else:
            self.shortcut = None
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = Conv2d(in_channels, bottleneck_channels, kernel_size=1, stride=stride_1x1, bias=False,
                            norm=get_norm(norm, bottleneck_channels))
        self.conv2 = Conv2d(bottleneck_channels, bottleneck_channels, kernel_size=3, stride=stride_3x3,
                            padding=dilation, dilation=dilation, groups=num_groups, bias=False,
                            norm=get_norm(norm, bottleneck_channels))
        self.conv3 = Conv2d(bottleneck_channels, out_channels, kernel_size=1, bias=False,
                            norm=get_norm(norm, out_channels))
        for layer in [self.conv1, self.conv2, self.conv3, self.shortcut]:
            if layer is not None:
                _c2_msra_fill(layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``B×C_in×H×W -> B×C_out×H/s×W/s``."""
        out = F.relu_(self.conv1(x))
        out = F.relu_(self.conv2(out))
        out = self.conv3(out)
        shortcut = self.shortcut(x) if self.shortcut is not None else x
        return F.relu_(out + shortcut)


class BasicStem(CNNBlockBase):
    """conv1 7×7/2 + norm + ReLU, then 3×3/2 max-pool: ``B×3×H×W -> B×C×H/4×W/4``."""

    def __init__(self, in_channels: int = 3, out_channels: int = 64, norm: str = "BN"):
        super().__init__(in_channels, out_channels, 4)
        self.conv1 = Conv2d(in_channels, out_channels, kernel_size=7, stride=2, padding=3, bias=False,
                            norm=get_norm(norm, out_channels))
        _c2_msra_fill(self.conv1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Conv + ReLU, then 3×3 stride-2 max pool: ``B×C_in×H×W -> B×C×H/4×W/4``."""
        x = F.relu_(self.conv1(x))
        return F.max_pool2d(x, kernel_size=3, stride=2, padding=1)


class ResNet(Backbone):
    """Stem followed by stages ``res2..res5``; returns the requested ``out_features``.

    Args:
        stem: the stem module (stride 4).
        stages: one list of blocks per stage, ``res2`` first.
        out_features: names among ``"stem", "res2".."res5"`` to return.
        freeze_at: 0 = train all; 1 = freeze the stem; k = the stem and the first k-1 stages.
    """

    def __init__(self, stem: nn.Module, stages: List[List[CNNBlockBase]], out_features: List[str],
                 freeze_at: int = 0):
        super().__init__()
        self.stem = stem
        current_stride = stem.stride
        self._out_feature_strides = {"stem": current_stride}
        self._out_feature_channels = {"stem": stem.out_channels}
        self.stage_names: List[str] = []
        self.stages: List[nn.Module] = []
        for i, blocks in enumerate(stages):
            name = f"res{i + 2}"
            stage = nn.Sequential(*blocks)
            self.add_module(name, stage)
            self.stage_names.append(name)
            self.stages.append(stage)
            current_stride = int(current_stride * np.prod([b.stride for b in blocks]))
            self._out_feature_strides[name] = current_stride
            self._out_feature_channels[name] = blocks[-1].out_channels
        unknown = [f for f in out_features if f not in self._out_feature_channels]
        if unknown:
            raise ValueError(f"ResNet out_features {unknown} do not exist; available: "
                             f"{list(self._out_feature_channels)}")
        self._out_features = list(out_features)
        # Only run the stages that produce a requested output.
        self._num_run_stages = max(int(n[3:]) if n != "stem" else 1 for n in self._out_features) - 1
        self.freeze(freeze_at)

    def freeze(self, freeze_at: int = 0) -> "ResNet":
        """Freeze the stem (``freeze_at >= 1``) and the first ``freeze_at - 1`` stages."""
        if freeze_at >= 1:
            self.stem = self.stem.freeze()
        for idx, stage in enumerate(self.stages, start=2):
            if freeze_at >= idx:
                for i, block in enumerate(stage):
                    stage[i] = block.freeze()
        return self

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """``B×3×H×W`` -> ``{name: B×C×H/stride×W/stride}``."""
        if x.dim() != 4:
            raise ValueError(f"ResNet takes B×C×H×W inputs, got shape {tuple(x.shape)}")
        outputs = {}
        x = self.stem(x)
        if "stem" in self._out_features:
            outputs["stem"] = x
        for name, stage in zip(self.stage_names[: self._num_run_stages], self.stages):
            x = stage(x)
            if name in self._out_features:
                outputs[name] = x
        return outputs


_DEPTH_TO_BLOCKS = {
    18: [2, 2, 2, 2],
    34: [3, 4, 6, 3],
    50: [3, 4, 6, 3],
    101: [3, 4, 23, 3],
    152: [3, 8, 36, 3],
}


@BACKBONE_REGISTRY.register()
def build_resnet_backbone(cfg, input_shape: ShapeSpec) -> ResNet:
    """Build a detectron2-layout ResNet from ``cfg.MODEL.RESNETS`` and ``MODEL.BACKBONE.FREEZE_AT``.

    DEPTH 18/34 use basic blocks (stage widths 64..512; RES2_OUT_CHANNELS, WIDTH_PER_GROUP,
    NUM_GROUPS and STRIDE_IN_1X1 do not apply), 50/101/152 bottleneck blocks.
    RES5_DILATION 2 keeps res5 at stride 16 (DeepLab).
    """
    r = cfg.MODEL.RESNETS
    depth = r.DEPTH
    if depth not in _DEPTH_TO_BLOCKS:
        raise ValueError(f"MODEL.RESNETS.DEPTH={depth} is not supported; expected one of {sorted(_DEPTH_TO_BLOCKS)}")
    if r.RES5_DILATION not in (1, 2):
        raise ValueError(f"MODEL.RESNETS.RES5_DILATION must be 1 or 2, got {r.RES5_DILATION}")
    norm = r.NORM
    stem = BasicStem(in_channels=input_shape.channels, out_channels=r.STEM_OUT_CHANNELS, norm=norm)
    num_blocks = _DEPTH_TO_BLOCKS[depth]
    out_features = list(r.OUT_FEATURES)
    max_stage = max(int(f[3:]) if f != "stem" else 1 for f in out_features)
    stages = []
    in_channels = r.STEM_OUT_CHANNELS
    bottleneck_channels = r.NUM_GROUPS * r.WIDTH_PER_GROUP
    out_channels = r.RES2_OUT_CHANNELS if depth >= 50 else 64
    for idx, stage_idx in enumerate(range(2, max_stage + 1)):
        dilation = r.RES5_DILATION if stage_idx == 5 else 1
        # res2 keeps the stem's stride; res5 with dilation keeps res4's stride.
        first_stride = 1 if idx == 0 or (stage_idx == 5 and dilation == 2) else 2
        blocks = []
        for b in range(num_blocks[idx]):
            stride = first_stride if b == 0 else 1
            if depth >= 50:
                block = BottleneckBlock(in_channels, out_channels, bottleneck_channels=bottleneck_channels,
                                        stride=stride, num_groups=r.NUM_GROUPS, norm=norm,
                                        stride_in_1x1=r.STRIDE_IN_1X1, dilation=dilation)
            else:
                if dilation != 1:
                    raise ValueError("MODEL.RESNETS.RES5_DILATION must be 1 for DEPTH 18/34 (basic blocks)")
                block = BasicBlock(in_channels, out_channels, stride=stride, norm=norm)
            blocks.append(block)
            in_channels = out_channels
        stages.append(blocks)
        out_channels *= 2
        bottleneck_channels *= 2
    return ResNet(stem, stages, out_features=out_features, freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT)


# ------------------------------------------------------------------------------------------
# torchvision / timm -> detectron2 layout
# ------------------------------------------------------------------------------------------
def _rename_torchvision_key(key: str) -> Optional[str]:
    m = re.match(r"^conv1\.(.*)$", key)
    if m:
        return f"stem.conv1.{m.group(1)}"
    m = re.match(r"^bn1\.(.*)$", key)
    if m:
        return f"stem.conv1.norm.{m.group(1)}"
    m = re.match(r"^layer(\d)\.(\d+)\.(conv|bn)(\d)\.(.*)$", key)
    if m:
        stage, block, kind, idx, rest = m.groups()
        base = f"res{int(stage) + 1}.{block}.conv{idx}"
        return f"{base}.{rest}" if kind == "conv" else f"{base}.norm.{rest}"
    m = re.match(r"^layer(\d)\.(\d+)\.downsample\.([01])\.(.*)$", key)
    if m:
        stage, block, idx, rest = m.groups()
        base = f"res{int(stage) + 1}.{block}.shortcut"
        return f"{base}.{rest}" if idx == "0" else f"{base}.norm.{rest}"
    return None


def convert_torchvision_resnet(state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Rename a torchvision (or timm) ResNet state dict to the detectron2 layout of :class:`ResNet`.

    ``conv1 -> stem.conv1``, ``bn1 -> stem.conv1.norm``, ``layerX.Y.convZ -> res{X+1}.Y.convZ``,
    ``layerX.Y.bnZ -> res{X+1}.Y.convZ.norm``, ``layerX.Y.downsample.{0,1} -> res{X+1}.Y.shortcut{,.norm}``.
    A leading ``module.`` (DataParallel) is stripped. Keys that are not backbone weights (``fc.*``)
    are dropped and logged.
    """
    out = {}
    dropped = []
    for key, value in state_dict.items():
        k = key[len("module."):] if key.startswith("module.") else key
        new = _rename_torchvision_key(k)
        if new is None:
            dropped.append(key)
        else:
            out[new] = value
    if dropped:
        logger.info(f"convert_torchvision_resnet: dropped {len(dropped)} non-backbone keys: {dropped[:8]}")
    return out
