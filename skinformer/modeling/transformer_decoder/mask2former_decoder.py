"""Mask2Former's multi-scale masked-attention transformer decoder.

Learnable queries (content + position) attend, one pixel-decoder level per layer in
round-robin order (1/32, 1/16, 1/8, 1/32, ...), only to pixels inside their previous mask
prediction (masked cross-attention), then to each other (self-attention), then an FFN.
Every layer (and the initial queries) predicts class logits and mask logits.
"""
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from skinformer.config import configurable
from skinformer.layers import MLP, Conv2d, PositionEmbeddingSine, c2_xavier_fill, mask_product

from .build import TRANSFORMER_DECODER_REGISTRY
from .utils import CrossAttentionLayer, FFNLayer, SelfAttentionLayer, aux_outputs_list

__all__ = ["MultiScaleMaskedTransformerDecoder"]


@TRANSFORMER_DECODER_REGISTRY.register()
class MultiScaleMaskedTransformerDecoder(nn.Module):
    """Mask2Former decoder.

    Args:
        in_channels: channels of the multi-scale features.
        mask_classification: predict class logits (always True for mask classification).
        num_classes: K.
        class_loss: "ce" (class head K+1, last = no-object) or "focal" (class head K).
        hidden_dim, num_queries, nheads, dim_feedforward, dropout, pre_norm: transformer sizes.
        dec_layers: number of transformer layers (``MODEL.MASK_FORMER.DEC_LAYERS - 1``: the
            initial prediction counts as one set).
        mask_dim: channels of ``mask_features``.
        enforce_input_project: 1×1 conv on the features even when ``in_channels == hidden_dim``.
        num_feature_levels: levels used round-robin (the first ones of ``multi_scale_features``).
    """

    # Kernel of the mask products on CPU (set with the linear layers', MODEL.CPU_LINEAR_KERNEL).
    cpu_linear_kernel = "blas"

    @configurable
    def __init__(self, in_channels: int, mask_classification: bool = True, *, num_classes: int,
                 class_loss: str = "ce", hidden_dim: int = 256, num_queries: int = 100, nheads: int = 8,
                 dim_feedforward: int = 2048, dropout: float = 0.0, dec_layers: int = 9, pre_norm: bool = False,
                 mask_dim: int = 256, enforce_input_project: bool = False, num_feature_levels: int = 3):
        super().__init__()
        if class_loss not in ("ce", "focal"):
            raise ValueError(f"MultiScaleMaskedTransformerDecoder: class_loss must be 'ce' or 'focal', got {class_loss!r}")
        if dec_layers < 0:
            raise ValueError(f"MultiScaleMaskedTransformerDecoder: dec_layers must be >= 0, got {dec_layers}")
        self.mask_classification = mask_classification
        self.num_classes = num_classes
        self.class_loss = class_loss
        self.num_heads = nheads
        self.num_layers = dec_layers
        self.num_queries = num_queries
        self.num_feature_levels = num_feature_levels

        self.pe_layer = PositionEmbeddingSine(hidden_dim // 2, normalize=True)
        self.transformer_self_attention_layers = nn.ModuleList(
            SelfAttentionLayer(hidden_dim, nheads, dropout=0.0, normalize_before=pre_norm) for _ in range(dec_layers)
        )
        self.transformer_cross_attention_layers = nn.ModuleList(
            CrossAttentionLayer(hidden_dim, nheads, dropout=0.0, normalize_before=pre_norm) for _ in range(dec_layers)
        )
        self.transformer_ffn_layers = nn.ModuleList(
            FFNLayer(hidden_dim, dim_feedforward, dropout=dropout, normalize_before=pre_norm) for _ in range(dec_layers)
        )
        self.decoder_norm = nn.LayerNorm(hidden_dim)

        self.query_feat = nn.Embedding(num_queries, hidden_dim)
        self.query_embed = nn.Embedding(num_queries, hidden_dim)
        self.level_embed = nn.Embedding(num_feature_levels, hidden_dim)
        self.input_proj = nn.ModuleList()
        for _ in range(num_feature_levels):
            if in_channels != hidden_dim or enforce_input_project:
                conv = Conv2d(in_channels, hidden_dim, kernel_size=1)
                c2_xavier_fill(conv)
                self.input_proj.append(conv)
            else:
                self.input_proj.append(nn.Identity())

        if mask_classification:
            self.class_embed = nn.Linear(hidden_dim, num_classes + 1 if class_loss == "ce" else num_classes)
        self.mask_embed = MLP(hidden_dim, hidden_dim, mask_dim, 3)

    @classmethod
    def from_config(cls, cfg, in_channels: int, mask_classification: bool = True):
        """Keyword arguments from ``cfg.MODEL.MASK_FORMER`` (``DEC_LAYERS`` counts the initial prediction,
        so ``dec_layers = DEC_LAYERS - 1``); raises ``ValueError`` if ``DEC_LAYERS < 1``."""
        node = cfg.MODEL.MASK_FORMER
        if node.DEC_LAYERS < 1:
            raise ValueError(f"MODEL.MASK_FORMER.DEC_LAYERS must be >= 1 (it counts the initial prediction), "
                             f"got {node.DEC_LAYERS}")
        return {
            "in_channels": in_channels,
            "mask_classification": mask_classification,
            "num_classes": cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES,
            "class_loss": "ce" if node.SEMANTIC_CE_LOSS else "focal",
            "hidden_dim": node.HIDDEN_DIM,
            "num_queries": node.NUM_OBJECT_QUERIES,
            "nheads": node.NHEADS,
            "dim_feedforward": node.DIM_FEEDFORWARD,
            "dropout": node.DROPOUT,
            # The initial prediction is one of the DEC_LAYERS supervised sets (Mask2Former).
            "dec_layers": node.DEC_LAYERS - 1,
            "pre_norm": node.PRE_NORM,
            "mask_dim": cfg.MODEL.SEM_SEG_HEAD.MASK_DIM,
            "enforce_input_project": node.ENFORCE_INPUT_PROJ,
            "num_feature_levels": cfg.MODEL.SEM_SEG_HEAD.NUM_FEATURE_LEVELS,
        }

    def forward(self, multi_scale_features: Sequence[torch.Tensor], mask_features: torch.Tensor,
                targets: Optional[List[Dict[str, torch.Tensor]]] = None) -> Dict:
        """
        Args:
            multi_scale_features: ``B×C×h_l×w_l``, low resolution first (at least
                ``num_feature_levels``).
            mask_features: ``B×mask_dim×H/4×W/4``.
            targets: unused (part of the decoder contract).
        Returns:
            ``{"pred_logits": B×Q×(K+1 | K), "pred_masks": B×Q×H/4×W/4,
            "aux_outputs": [dicts of the initial and the first L-1 layers' predictions]}``.
        """
        if len(multi_scale_features) < self.num_feature_levels:
            raise ValueError(f"MultiScaleMaskedTransformerDecoder: expected {self.num_feature_levels} feature "
                             f"levels, got {len(multi_scale_features)}")
        src, pos, size_list = [], [], []
        for i in range(self.num_feature_levels):
            x = multi_scale_features[i]
            size_list.append(x.shape[-2:])
            pos.append(self.pe_layer(x).flatten(2).transpose(1, 2))
            src.append((self.input_proj[i](x).flatten(2) + self.level_embed.weight[i][None, :, None]).transpose(1, 2))

        bs = mask_features.shape[0]
        query_embed = self.query_embed.weight.unsqueeze(0).expand(bs, -1, -1)
        output = self.query_feat.weight.unsqueeze(0).expand(bs, -1, -1)

        predictions_class, predictions_mask = [], []
        outputs_class, outputs_mask, attn_mask = self.forward_prediction_heads(output, mask_features, size_list[0])
        predictions_class.append(outputs_class)
        predictions_mask.append(outputs_mask)

        for i in range(self.num_layers):
            level_index = i % self.num_feature_levels
            # A query whose mask is empty at this level would attend to nothing: let it see all.
            attn_mask[attn_mask.all(dim=-1)] = False
            output = self.transformer_cross_attention_layers[i](
                output, src[level_index], memory_mask=attn_mask, pos=pos[level_index], query_pos=query_embed
            )
            output = self.transformer_self_attention_layers[i](output, query_pos=query_embed)
            output = self.transformer_ffn_layers[i](output)
            outputs_class, outputs_mask, attn_mask = self.forward_prediction_heads(
                output, mask_features, size_list[(i + 1) % self.num_feature_levels]
            )
            predictions_class.append(outputs_class)
            predictions_mask.append(outputs_mask)

        logits = predictions_class if self.mask_classification else None
        out = {
            "pred_masks": predictions_mask[-1],
            "aux_outputs": aux_outputs_list(pred_logits=logits, pred_masks=predictions_mask),
        }
        if self.mask_classification:
            out["pred_logits"] = predictions_class[-1]
        return out

    def forward_prediction_heads(self, output: torch.Tensor, mask_features: torch.Tensor, attn_mask_target_size):
        """Class logits ``B×Q×C``, mask logits ``B×Q×H/4×W/4`` and the next layer's attention mask
        ``(B·heads)×Q×(h·w)`` (True = blocked: predicted probability < 0.5 at that level's size)."""
        decoder_output = self.decoder_norm(output)
        outputs_class = self.class_embed(decoder_output) if self.mask_classification else None
        mask_embed = self.mask_embed(decoder_output)
        outputs_mask = mask_product(mask_embed, mask_features, self.cpu_linear_kernel)
        attn_mask = F.interpolate(outputs_mask, size=attn_mask_target_size, mode="bilinear", align_corners=False)
        attn_mask = (attn_mask.sigmoid().flatten(2).unsqueeze(1).repeat(1, self.num_heads, 1, 1).flatten(0, 1) < 0.5)
        return outputs_class, outputs_mask, attn_mask.detach()
