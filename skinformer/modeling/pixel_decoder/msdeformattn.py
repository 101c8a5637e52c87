"""Multi-scale deformable-attention pixel decoder (Mask2Former / MaskDINO / SiMaskFormer).

backbone res3..res5 ─ 1×1 conv + GN ─┐
                  + 2-D sine PE + level embedding
                                     └─ N deformable encoder layers (post-norm) ─ split per level
res2 ─ FPNFusion (SUM or CONCAT) with the upsampled 1/8 map ─ 1×1 conv ─ mask_features (1/4)

Precision: unlike Mask2Former / the original implementation (which force float32 with ``autocast(enabled=False)``),
this module runs in whatever dtype autocast gives it. The deformable-attention op accepts half
and bfloat16 ``value`` and keeps the sampling locations in float32, so AMP is safe; call
``forward_features`` under ``torch.autocast(..., enabled=False)`` with float32 features to get
the original implementation's numerics.

Padding: the encoder attends over the whole padded map (no padding mask, valid ratios 1), as
the original implementation does: its inputs are always padded to a multiple of 32, and padding is part of the
image after normalisation (zeros).
"""
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from skinformer.config import configurable
from skinformer.layers import Conv2d, PositionEmbeddingSine, ShapeSpec, c2_xavier_fill, ffn_relu, get_norm

from .build import PIXEL_DECODER_REGISTRY
from .fpn import FPNFusion, _select_features

__all__ = [
    "MSDeformAttnTransformerEncoderLayer",
    "MSDeformAttnTransformerEncoder",
    "MSDeformAttnPixelDecoder",
]


def _msdeform_attn_cls():
    # Imported lazily: the op module is optional at import time of this package.
    from skinformer.layers import MSDeformAttn

    return MSDeformAttn


def _reset_msdeform_attn(module: nn.Module) -> None:
    for name in ("_reset_parameters", "reset_parameters"):
        fn = getattr(module, name, None)
        if callable(fn):
            fn()
            return


_ACTIVATIONS = {"relu": ffn_relu, "gelu": F.gelu}


class MSDeformAttnTransformerEncoderLayer(nn.Module):
    """Post-norm encoder layer: deformable self-attention, then FFN.

    ``x ← LN(x + Drop(MSDA(x + pos, ref, x)))``, ``x ← LN(x + Drop(W2·act(W1·x)))``.
    """

    def __init__(self, d_model: int = 256, d_ffn: int = 1024, dropout: float = 0.1, activation: str = "relu",
                 n_levels: int = 3, n_heads: int = 8, n_points: int = 4):
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"Unknown activation {activation!r}; expected one of {sorted(_ACTIVATIONS)}")
        self.self_attn = _msdeform_attn_cls()(d_model, n_levels, n_heads, n_points)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.activation = _ACTIVATIONS[activation]
        self.dropout2 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.dropout3 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, src: torch.Tensor, pos: torch.Tensor, reference_points: torch.Tensor,
                spatial_shapes: torch.Tensor, level_start_index: torch.Tensor,
                padding_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``src``/``pos`` ``B×S×C``; ``reference_points`` ``B×S×L×2``; returns ``B×S×C``."""
        attn = self.self_attn(src + pos, reference_points, src, spatial_shapes, level_start_index, padding_mask)
        src = self.norm1(src + self.dropout1(attn))
        ffn = self.linear2(self.dropout2(self.activation(self.linear1(src))))
        return self.norm2(src + self.dropout3(ffn))


class MSDeformAttnTransformerEncoder(nn.Module):
    """A stack of encoder layers over the flattened multi-level tokens with a learnable level
    embedding. Input maps may be given in any level order; the output keeps it."""

    def __init__(self, d_model: int = 256, nhead: int = 8, num_encoder_layers: int = 6, dim_feedforward: int = 1024,
                 dropout: float = 0.1, activation: str = "relu", num_feature_levels: int = 3, enc_n_points: int = 4):
        super().__init__()
        self.d_model = d_model
        self.layers = nn.ModuleList(
            MSDeformAttnTransformerEncoderLayer(d_model, dim_feedforward, dropout, activation, num_feature_levels,
                                                nhead, enc_n_points)
            for _ in range(num_encoder_layers)
        )
        self.level_embed = nn.Parameter(torch.empty(num_feature_levels, d_model))
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        for layer in self.layers:
            _reset_msdeform_attn(layer.self_attn)
        nn.init.normal_(self.level_embed)

    @staticmethod
    def get_reference_points(spatial_shapes: List[Tuple[int, int]], batch: int, num_levels: int,
                             device, dtype) -> torch.Tensor:
        """Pixel centres ``((j + 0.5)/W_l, (i + 0.5)/H_l)`` of every token, ``B×S×L×2`` (x, y),
        the same point for every level (valid ratios are 1)."""
        refs = []
        for h, w in spatial_shapes:
            ref_y, ref_x = torch.meshgrid(
                (torch.arange(h, device=device, dtype=dtype) + 0.5) / h,
                (torch.arange(w, device=device, dtype=dtype) + 0.5) / w,
                indexing="ij",
            )
            refs.append(torch.stack((ref_x.reshape(-1), ref_y.reshape(-1)), -1))
        ref = torch.cat(refs, 0)  # S×2
        return ref[None, :, None, :].expand(batch, -1, num_levels, -1)

    def forward(self, srcs: List[torch.Tensor], pos_embeds: List[torch.Tensor]
                ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """
        Args:
            srcs, pos_embeds: per level ``B×C×H_l×W_l``.
        Returns:
            memory ``B×S×C`` (S = Σ H_l·W_l, levels concatenated in input order),
            spatial_shapes ``L×2`` (int64), level_start_index ``L`` (int64).
        """
        shapes = [tuple(s.shape[-2:]) for s in srcs]
        src_flatten = torch.cat([s.flatten(2).transpose(1, 2) for s in srcs], 1)
        pos_flatten = torch.cat([
            p.flatten(2).transpose(1, 2) + self.level_embed[lvl].view(1, 1, -1)
            for lvl, p in enumerate(pos_embeds)
        ], 1).to(src_flatten.dtype)
        device = src_flatten.device
        spatial_shapes = torch.as_tensor(shapes, dtype=torch.long, device=device)
        level_start_index = torch.cat((spatial_shapes.new_zeros((1,)), spatial_shapes.prod(1).cumsum(0)[:-1]))
        reference_points = self.get_reference_points(shapes, src_flatten.shape[0], len(srcs), device, torch.float32)
        out = src_flatten
        for layer in self.layers:
            out = layer(out, pos_flatten, reference_points, spatial_shapes, level_start_index)
        return out, spatial_shapes, level_start_index


@PIXEL_DECODER_REGISTRY.register()
class MSDeformAttnPixelDecoder(nn.Module):
    """Deformable-encoder pixel decoder with an FPN to the finest input stride.

    Args:
        input_shape: backbone feature shapes used (encoder inputs + finer FPN inputs).
        transformer_in_features: names refined by the encoder (e.g. res3..res5).
        conv_dim: width of the encoder and FPN.
        mask_dim: channels of ``mask_features``.
        norm: norm of the input projections and FPN convs (GroupNorm(32) by default).
        transformer_dropout, transformer_nheads, transformer_dim_feedforward,
        transformer_enc_layers, transformer_n_points: encoder hyper-parameters.
        common_stride: stride of ``mask_features`` (4).
        num_feature_levels: multi-scale features returned for the transformer decoder.
        total_num_feature_levels: encoder levels; extra levels beyond the encoder inputs are
            made by stride-2 3×3 convs from the coarsest input (MaskDINO).
        fpn_fusion: "SUM" or "CONCAT" (see :mod:`.fpn`).
    """

    @configurable
    def __init__(self, input_shape: Dict[str, ShapeSpec], *, transformer_in_features: List[str], conv_dim: int,
                 mask_dim: int, norm: str = "GN", transformer_dropout: float = 0.0, transformer_nheads: int = 8,
                 transformer_dim_feedforward: int = 1024, transformer_enc_layers: int = 6,
                 transformer_n_points: int = 4, common_stride: int = 4, num_feature_levels: int = 3,
                 total_num_feature_levels: Optional[int] = None, fpn_fusion: str = "SUM"):
        super().__init__()
        missing = [f for f in transformer_in_features if f not in input_shape]
        if missing:
            raise ValueError(
                f"MSDeformAttnPixelDecoder: encoder features {missing} "
                "(MODEL.SEM_SEG_HEAD.DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES) are not among the "
                f"decoder inputs {sorted(input_shape)} (MODEL.SEM_SEG_HEAD.IN_FEATURES)"
            )
        shapes = sorted(input_shape.items(), key=lambda kv: kv[1].stride)
        self.in_features = [k for k, _ in shapes]  # fine -> coarse
        # Encoder inputs, coarse -> fine ("high2low" level order: res5, res4, res3).
        enc = sorted(((k, input_shape[k]) for k in transformer_in_features), key=lambda kv: -kv[1].stride)
        self.transformer_in_features = [k for k, _ in enc]
        n_in = len(enc)
        total = n_in if total_num_feature_levels is None else total_num_feature_levels
        if total < n_in:
            raise ValueError(
                f"MODEL.SEM_SEG_HEAD.TOTAL_NUM_FEATURE_LEVELS={total} < number of encoder inputs {n_in}"
            )
        if num_feature_levels > total:
            raise ValueError(
                f"MODEL.SEM_SEG_HEAD.NUM_FEATURE_LEVELS={num_feature_levels} > encoder levels {total}"
            )
        self.total_num_feature_levels = total
        self.num_feature_levels = num_feature_levels

        def proj(in_ch, **kw):
            conv = Conv2d(in_ch, conv_dim, norm=get_norm(norm, conv_dim), **kw)
            nn.init.xavier_uniform_(conv.weight, gain=1)
            if conv.bias is not None:
                nn.init.constant_(conv.bias, 0)
            return conv

        # Extra coarser levels first (they are the lowest resolution), then the inputs.
        extra = []
        in_ch = enc[0][1].channels
        for _ in range(total - n_in):
            extra.append(proj(in_ch, kernel_size=3, stride=2, padding=1))
            in_ch = conv_dim
        self.extra_proj = nn.ModuleList(extra)
        self.input_proj = nn.ModuleList(proj(v.channels, kernel_size=1) for _, v in enc)

        self.transformer = MSDeformAttnTransformerEncoder(
            d_model=conv_dim, nhead=transformer_nheads, num_encoder_layers=transformer_enc_layers,
            dim_feedforward=transformer_dim_feedforward, dropout=transformer_dropout,
            num_feature_levels=total, enc_n_points=transformer_n_points,
        )
        self.pe_layer = PositionEmbeddingSine(conv_dim // 2, normalize=True)

        self.mask_dim = mask_dim
        self.mask_features = Conv2d(conv_dim, mask_dim, kernel_size=1)
        c2_xavier_fill(self.mask_features)

        # FPN from the finest encoder level down to common_stride.
        self.common_stride = common_stride
        min_enc_stride = min(v.stride for _, v in enc)
        fpn_inputs = [(k, v) for k, v in shapes if common_stride <= v.stride < min_enc_stride]
        self.fpn_features = [k for k, _ in fpn_inputs][::-1]  # coarse -> fine
        self.fpn = nn.ModuleList(FPNFusion(v.channels, conv_dim, norm, fpn_fusion) for _, v in fpn_inputs[::-1])
        self.fpn_fusion = fpn_fusion

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        """Keyword arguments from ``cfg.MODEL.SEM_SEG_HEAD`` and the backbone ``input_shape``."""
        head = cfg.MODEL.SEM_SEG_HEAD
        return {
            "input_shape": _select_features(input_shape, head.IN_FEATURES),
            "transformer_in_features": list(head.DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES),
            "conv_dim": head.CONVS_DIM,
            "mask_dim": head.MASK_DIM,
            "norm": head.NORM,
            "transformer_dropout": head.TRANSFORMER_DROPOUT,
            "transformer_nheads": head.DEFORMABLE_TRANSFORMER_ENCODER_N_HEADS,
            "transformer_dim_feedforward": head.DIM_FEEDFORWARD,
            "transformer_enc_layers": head.TRANSFORMER_ENC_LAYERS,
            "transformer_n_points": head.DEFORMABLE_TRANSFORMER_ENCODER_N_POINTS,
            "common_stride": head.COMMON_STRIDE,
            "num_feature_levels": head.NUM_FEATURE_LEVELS,
            "total_num_feature_levels": head.TOTAL_NUM_FEATURE_LEVELS,
            "fpn_fusion": head.FPN_FUSION,
        }

    def forward_features(self, features: Dict[str, torch.Tensor]) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """
        Args:
            features: backbone maps by name (``B×C×H/s×W/s``).
        Returns:
            ``mask_features`` ``B×mask_dim×H/4×W/4`` and ``multi_scale_features``: the first
            ``num_feature_levels`` encoder outputs, low resolution first (1/32, 1/16, 1/8),
            each ``B×conv_dim×h×w``.
        """
        srcs, pos = [], []
        x = None
        for i, conv in enumerate(self.extra_proj):
            x = conv(features[self.transformer_in_features[0]] if i == 0 else x)
            srcs.append(x)
            pos.append(self.pe_layer(x))
        for name, conv in zip(self.transformer_in_features, self.input_proj):
            f = features[name]
            srcs.append(conv(f))
            pos.append(self.pe_layer(f))

        memory, spatial_shapes, level_start_index = self.transformer(srcs, pos)
        batch = memory.shape[0]
        sizes = spatial_shapes.prod(1).tolist()
        # contiguous: the transposed tokens would be a channels-last view, on which the FPN's
        # upsampling and concatenation run twice as long on CPU
        outs = [
            z.transpose(1, 2).reshape(batch, -1, int(h), int(w)).contiguous()
            for z, (h, w) in zip(memory.split(sizes, dim=1), spatial_shapes.tolist())
        ]
        y = outs[-1]
        for name, fusion in zip(self.fpn_features, self.fpn):
            y = fusion(features[name], y)
            outs.append(y)
        return self.mask_features(outs[-1]), outs[: self.num_feature_levels]

    def forward(self, features):
        """Same as :meth:`forward_features`."""
        return self.forward_features(features)
