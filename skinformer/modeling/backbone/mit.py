"""SegFormer's Mix Transformer (MiT-B0..B5) encoder.

Module names follow the Hugging Face ``SegformerEncoder`` exactly, so a ``nvidia/mit-b*`` (or
``nvidia/segformer-b*``) state dict loads after dropping its ``segformer.encoder.`` prefix
(:func:`load_hf_mit_state_dict`); nothing is downloaded. Four stages of overlapping patch
embedding -> N blocks (pre-norm efficient self-attention with spatial reduction, pre-norm Mix-FFN
with a 3×3 depth-wise conv, stochastic depth) -> LayerNorm, at strides 4, 8, 16, 32.
"""
import logging
import math
from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from skinformer.config import configurable
from skinformer.layers import ShapeSpec

from .backbone import Backbone
from .build import BACKBONE_REGISTRY

__all__ = ["MIT_VARIANTS", "MiTBackbone", "load_hf_mit_state_dict"]

logger = logging.getLogger(__name__)

# (hidden sizes, depths) per variant; every variant has heads (1, 2, 5, 8), SR ratios (8, 4, 2, 1),
# MLP ratio 4, patch sizes (7, 3, 3, 3) and strides (4, 2, 2, 2) (SegFormer paper, Table 6).
MIT_VARIANTS: Dict[str, Tuple[Tuple[int, ...], Tuple[int, ...]]] = {
    "b0": ((32, 64, 160, 256), (2, 2, 2, 2)),
    "b1": ((64, 128, 320, 512), (2, 2, 2, 2)),
    "b2": ((64, 128, 320, 512), (3, 4, 6, 3)),
    "b3": ((64, 128, 320, 512), (3, 4, 18, 3)),
    "b4": ((64, 128, 320, 512), (3, 8, 27, 3)),
    "b5": ((64, 128, 320, 512), (3, 6, 40, 3)),
}
_HEADS, _SR, _MLP, _PATCH, _STRIDE = (1, 2, 5, 8), (8, 4, 2, 1), 4, (7, 3, 3, 3), (4, 2, 2, 2)
_HF_PREFIXES = ("segformer.encoder.", "encoder.", "backbone.")


class OverlapPatchEmbeddings(nn.Module):
    """``B×C×H×W -> (B×(H'W')×D, H', W')``: strided conv (kernel > stride, so patches overlap) + LayerNorm."""

    def __init__(self, patch_size: int, stride: int, in_channels: int, hidden_size: int):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, hidden_size, kernel_size=patch_size, stride=stride, padding=patch_size // 2)
        self.layer_norm = nn.LayerNorm(hidden_size)

    def forward(self, x: torch.Tensor):
        """``B×C×H×W -> (B×(H'·W')×D tokens, H', W')``."""
        x = self.proj(x)
        h, w = x.shape[-2:]
        return self.layer_norm(x.flatten(2).transpose(1, 2)), h, w


class EfficientSelfAttention(nn.Module):
    """Multi-head attention whose keys/values come from a ``sr_ratio``-times downsampled sequence
    (strided conv + LayerNorm), which makes attention affordable at stride 4."""

    def __init__(self, hidden_size: int, num_heads: int, sr_ratio: int):
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"MiT: hidden size {hidden_size} is not a multiple of {num_heads} heads")
        self.num_heads = num_heads
        self.query = nn.Linear(hidden_size, hidden_size)
        self.key = nn.Linear(hidden_size, hidden_size)
        self.value = nn.Linear(hidden_size, hidden_size)
        self.sr_ratio = sr_ratio
        if sr_ratio > 1:
            self.sr = nn.Conv2d(hidden_size, hidden_size, kernel_size=sr_ratio, stride=sr_ratio)
            self.layer_norm = nn.LayerNorm(hidden_size)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.view(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """Self-attention of ``B×N×C`` tokens (an ``h×w`` grid) with keys/values from the reduced
        sequence: ``B×N×C -> B×N×C``."""
        b, n, c = x.shape
        q = self._heads(self.query(x))
        kv = x
        if self.sr_ratio > 1:
            kv = self.sr(x.transpose(1, 2).reshape(b, c, h, w)).flatten(2).transpose(1, 2)
            kv = self.layer_norm(kv)
        out = F.scaled_dot_product_attention(q, self._heads(self.key(kv)), self._heads(self.value(kv)))
        return out.transpose(1, 2).reshape(b, n, c)


class SelfOutput(nn.Module):
    """Output projection of the MiT attention (Hugging Face naming, so its weights load as they are)."""
    def __init__(self, hidden_size: int):
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Output projection: ``B×N×C -> B×N×C``."""
        return self.dense(x)


class Attention(nn.Module):
    """Efficient (spatially reduced) self-attention with its output projection."""
    def __init__(self, hidden_size: int, num_heads: int, sr_ratio: int):
        super().__init__()
        self.self = EfficientSelfAttention(hidden_size, num_heads, sr_ratio)
        self.output = SelfOutput(hidden_size)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """Efficient self-attention then output projection: ``B×N×C -> B×N×C`` (``N = h·w``)."""
        return self.output(self.self(x, h, w))


class DWConv(nn.Module):
    """Depth-wise 3×3 conv of the Mix-FFN, on tokens."""
    def __init__(self, dim: int):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """3×3 depth-wise conv on the ``h×w`` token grid: ``B×N×C -> B×N×C``."""
        b, n, c = x.shape
        return self.dwconv(x.transpose(1, 2).reshape(b, c, h, w)).flatten(2).transpose(1, 2)


class MixFFN(nn.Module):
    """Linear -> 3×3 depth-wise conv (positional information without position embeddings) -> GELU -> Linear."""

    def __init__(self, hidden_size: int, mlp_hidden: int):
        super().__init__()
        self.dense1 = nn.Linear(hidden_size, mlp_hidden)
        self.dwconv = DWConv(mlp_hidden)
        self.dense2 = nn.Linear(mlp_hidden, hidden_size)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """``B×N×C -> B×N×C`` on tokens of an ``h×w`` grid."""
        return self.dense2(F.gelu(self.dwconv(self.dense1(x), h, w)))


class DropPath(nn.Module):
    """Stochastic depth: drop the whole residual branch of a sample with probability ``p`` in training."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Zero whole samples with probability ``p`` and rescale the rest by ``1/(1-p)``; identity in eval."""
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep


class MiTLayer(nn.Module):
    """One MiT block: pre-norm efficient attention and Mix-FFN, each residual with drop-path."""
    def __init__(self, hidden_size: int, num_heads: int, sr_ratio: int, mlp_ratio: int, drop_path: float):
        super().__init__()
        self.layer_norm_1 = nn.LayerNorm(hidden_size)
        self.attention = Attention(hidden_size, num_heads, sr_ratio)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.layer_norm_2 = nn.LayerNorm(hidden_size)
        self.mlp = MixFFN(hidden_size, hidden_size * mlp_ratio)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """Pre-norm attention and Mix-FFN residual blocks with drop path: ``B×N×C -> B×N×C``."""
        x = x + self.drop_path(self.attention(self.layer_norm_1(x), h, w))
        return x + self.drop_path(self.mlp(self.layer_norm_2(x), h, w))


@BACKBONE_REGISTRY.register()
class MiTBackbone(Backbone):
    """MiT encoder returning ``res2..res5`` (strides 4..32; e.g. B0 widths 32/64/160/256).

    Args:
        variant: "b0" .. "b5".
        in_channels: image channels.
        drop_path_rate: stochastic depth, linearly increasing over all blocks up to this (0.1 in SegFormer).
        out_features: subset of ``res2..res5``.
        pretrained_file: local ``nvidia/mit-b*`` / ``segformer-b*`` state dict (``pytorch_model.bin`` or
            a ``.pth``/``.safetensors``-converted torch file), "" = random init.

    ``forward``: ``B×C×H×W`` -> ``{res_i: B×C_i×H/2^i×W/2^i}`` (ceil for sizes not divisible).
    """

    @configurable
    def __init__(self, *, variant: str = "b0", in_channels: int = 3, drop_path_rate: float = 0.1,
                 out_features: Sequence[str] = ("res2", "res3", "res4", "res5"), pretrained_file: str = ""):
        super().__init__()
        if variant not in MIT_VARIANTS:
            raise ValueError(f"MODEL.MIT.VARIANT='{variant}' is unknown; expected one of {sorted(MIT_VARIANTS)}")
        hidden, depths = MIT_VARIANTS[variant]
        names = ["res2", "res3", "res4", "res5"]
        bad = [f for f in out_features if f not in names]
        if bad:
            raise ValueError(f"MiTBackbone out_features {bad} unknown; expected a subset of {names}")
        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        self.patch_embeddings = nn.ModuleList()
        self.block = nn.ModuleList()
        self.layer_norm = nn.ModuleList()
        start = 0
        for i in range(4):
            self.patch_embeddings.append(OverlapPatchEmbeddings(_PATCH[i], _STRIDE[i],
                                                                in_channels if i == 0 else hidden[i - 1], hidden[i]))
            self.block.append(nn.ModuleList([MiTLayer(hidden[i], _HEADS[i], _SR[i], _MLP, rates[start + j])
                                             for j in range(depths[i])]))
            self.layer_norm.append(nn.LayerNorm(hidden[i]))
            start += depths[i]
        self._init_weights()
        self.variant = variant
        self._out_features = [n for n in names if n in out_features]
        self._out_feature_channels = dict(zip(names, hidden))
        self._out_feature_strides = {n: 2 ** (i + 2) for i, n in enumerate(names)}
        if pretrained_file:
            load_hf_mit_state_dict(self, pretrained_file)
        else:
            logger.info(f"MiTBackbone '{variant}': random initialisation (no MODEL.MIT.PRETRAINED_FILE).")

    def _init_weights(self) -> None:
        # SegFormer's init: truncated normal linears, fan-out normal convs, unit LayerNorms.
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @classmethod
    def from_config(cls, cfg, input_shape: ShapeSpec = None):
        """Keyword arguments from ``cfg.MODEL.MIT`` (input channels from ``input_shape``, default 3)."""
        node = cfg.MODEL.MIT
        return {
            "variant": node.VARIANT,
            "in_channels": input_shape.channels if input_shape is not None and input_shape.channels else 3,
            "drop_path_rate": node.DROP_PATH_RATE,
            "out_features": list(node.OUT_FEATURES),
            "pretrained_file": node.PRETRAINED_FILE,
        }

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """``B×3×H×W`` -> ``{name: B×C_i×H/s×W/s}`` for the requested ``res2..res5``; stages after the
        last requested one are skipped."""
        out = {}
        b = x.shape[0]
        for i, (embed, blocks, norm) in enumerate(zip(self.patch_embeddings, self.block, self.layer_norm)):
            x, h, w = embed(x)
            for blk in blocks:
                x = blk(x, h, w)
            x = norm(x).reshape(b, h, w, -1).permute(0, 3, 1, 2).contiguous()
            name = f"res{i + 2}"
            if name in self._out_features:
                out[name] = x
            if name == self._out_features[-1]:
                break
        return out

    @property
    def size_divisibility(self) -> int:
        """32: input sides must be multiples of the coarsest stride."""
        return 32


def load_hf_mit_state_dict(model: MiTBackbone, file_name: str) -> Tuple[List[str], List[str]]:
    """Load a local Hugging Face SegFormer / MiT checkpoint into ``model``.

    Keys are matched after removing a ``segformer.encoder.`` (or ``encoder.`` / ``backbone.``)
    prefix; the classifier / decode head are reported as unused. A shape mismatch (e.g. a B2 file
    into a B0 model) is an error naming the key, since it means the wrong variant. Returns
    ``(missing, unexpected)``.
    """
    from skinformer.utils.file_io import PathManager

    with PathManager.open(file_name, "rb") as f:
        obj = torch.load(f, map_location="cpu", weights_only=True)
    if isinstance(obj, dict) and isinstance(obj.get("state_dict", obj.get("model")), dict):
        obj = obj.get("state_dict", obj.get("model"))
    if not isinstance(obj, dict):
        raise ValueError(f"MODEL.MIT.PRETRAINED_FILE '{file_name}' does not hold a state dict")
    src = {}
    for k, v in obj.items():
        for p in _HF_PREFIXES:
            if k.startswith(p):
                src[k[len(p):]] = v
                break
    target = model.state_dict()
    for k, v in src.items():
        if k in target and tuple(v.shape) != tuple(target[k].shape):
            raise ValueError(f"{file_name}: '{k}' has shape {tuple(v.shape)} but MiT-{model.variant.upper()} expects "
                             f"{tuple(target[k].shape)}; is MODEL.MIT.VARIANT the checkpoint's variant?")
    missing = [k for k in target if k not in src]
    unexpected = [k for k in obj if not any(k.startswith(p) and k[len(p):] in target for p in _HF_PREFIXES)]
    model.load_state_dict({k: v for k, v in src.items() if k in target}, strict=False)
    if missing:
        logger.warning(f"{file_name}: {len(missing)} MiT weights not in the file: {missing[:10]}")
    logger.info(f"Loaded {len(target) - len(missing)} MiT tensors from {file_name}; {len(unexpected)} unused "
                f"(e.g. {unexpected[:3]})")
    return missing, unexpected
