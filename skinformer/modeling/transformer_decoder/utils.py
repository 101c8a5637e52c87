"""Attention / FFN sub-layers and helpers shared by the mask-transformer decoders.

All layers are batch-first (``B×L×C``) and support post-norm (default, Mask2Former) and
pre-norm. Their parameter names match Mask2Former's so its checkpoints map one to one.
"""
import copy
from typing import Callable, Dict, List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "SelfAttentionLayer",
    "CrossAttentionLayer",
    "FFNLayer",
    "get_activation_fn",
    "get_clones",
    "with_pos_embed",
    "aux_outputs_list",
]

_ACTIVATIONS: Dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"relu": F.relu, "gelu": F.gelu, "glu": F.glu}


def get_activation_fn(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """Activation function by name ("relu", "gelu", "glu")."""
    if name not in _ACTIVATIONS:
        raise ValueError(f"Unknown activation {name!r}; expected one of {sorted(_ACTIVATIONS)}")
    return _ACTIVATIONS[name]


def get_clones(module: nn.Module, n: int) -> nn.ModuleList:
    """``n`` independent deep copies of ``module``."""
    return nn.ModuleList(copy.deepcopy(module) for _ in range(n))


def with_pos_embed(x: torch.Tensor, pos: Optional[torch.Tensor]) -> torch.Tensor:
    """``x + pos``, or ``x`` when there is no positional embedding."""
    return x if pos is None else x + pos


def _xavier_(module: nn.Module) -> None:
    for p in module.parameters():
        if p.dim() > 1:
            nn.init.xavier_uniform_(p)


class SelfAttentionLayer(nn.Module):
    """Multi-head self-attention among queries with a residual and LayerNorm.

    ``forward(tgt B×Q×C, tgt_mask (B·heads)×Q×Q or Q×Q (True = blocked), query_pos B×Q×C)``.
    """

    def __init__(self, d_model: int, nhead: int, dropout: float = 0.0, normalize_before: bool = False):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=True)
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.normalize_before = normalize_before
        _xavier_(self)

    def forward(self, tgt: torch.Tensor, tgt_mask: Optional[torch.Tensor] = None,
                tgt_key_padding_mask: Optional[torch.Tensor] = None,
                query_pos: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Residual self-attention (pre- or post-norm): ``B×Q×C -> B×Q×C``."""
        x = self.norm(tgt) if self.normalize_before else tgt
        q = k = with_pos_embed(x, query_pos)
        out = self.self_attn(q, k, value=x, attn_mask=tgt_mask, key_padding_mask=tgt_key_padding_mask,
                             need_weights=False)[0]
        tgt = tgt + self.dropout(out)
        return tgt if self.normalize_before else self.norm(tgt)


class CrossAttentionLayer(nn.Module):
    """Multi-head attention from queries to a memory with a residual and LayerNorm.

    ``forward(tgt B×Q×C, memory B×S×C, memory_mask (B·heads)×Q×S (True = blocked), pos B×S×C,
    query_pos B×Q×C)``.
    """

    def __init__(self, d_model: int, nhead: int, dropout: float = 0.0, normalize_before: bool = False):
        super().__init__()
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=True)
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.normalize_before = normalize_before
        _xavier_(self)

    def forward(self, tgt: torch.Tensor, memory: torch.Tensor, memory_mask: Optional[torch.Tensor] = None,
                memory_key_padding_mask: Optional[torch.Tensor] = None, pos: Optional[torch.Tensor] = None,
                query_pos: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Residual cross-attention of ``B×Q×C`` queries to ``B×S×C`` memory: ``B×Q×C``."""
        x = self.norm(tgt) if self.normalize_before else tgt
        out = self.multihead_attn(query=with_pos_embed(x, query_pos), key=with_pos_embed(memory, pos), value=memory,
                                  attn_mask=memory_mask, key_padding_mask=memory_key_padding_mask,
                                  need_weights=False)[0]
        tgt = tgt + self.dropout(out)
        return tgt if self.normalize_before else self.norm(tgt)


class FFNLayer(nn.Module):
    """``x + W2·drop(act(W1·x))`` with a LayerNorm (post- or pre-norm)."""

    def __init__(self, d_model: int, dim_feedforward: int = 2048, dropout: float = 0.0, activation: str = "relu",
                 normalize_before: bool = False):
        super().__init__()
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm = nn.LayerNorm(d_model)
        self.activation = get_activation_fn(activation)
        self.normalize_before = normalize_before
        _xavier_(self)

    def forward(self, tgt: torch.Tensor) -> torch.Tensor:
        """Residual two-layer FFN (pre- or post-norm): ``B×Q×C -> B×Q×C``."""
        x = self.norm(tgt) if self.normalize_before else tgt
        tgt = tgt + self.dropout(self.linear2(self.dropout(self.activation(self.linear1(x)))))
        return tgt if self.normalize_before else self.norm(tgt)


def aux_outputs_list(**per_layer: List[torch.Tensor]) -> List[Dict[str, torch.Tensor]]:
    """``aux_outputs_list(pred_logits=[...], pred_masks=[...])`` -> one dict per earlier
    prediction set (every list minus its last entry, which is the final prediction).
    Lists that are None are left out."""
    lists = {k: v for k, v in per_layer.items() if v is not None}
    n = min(len(v) for v in lists.values())
    return [{k: v[i] for k, v in lists.items()} for i in range(n - 1)]
