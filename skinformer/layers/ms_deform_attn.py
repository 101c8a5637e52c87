"""Multi-scale deformable attention module (Deformable-DETR), the encoder/decoder building block.

The op itself (backends, dtypes, fallbacks) is :func:`multi_scale_deformable_attn` in
:mod:`skinformer.layers.ms_deform_attn_func`.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch
from torch import nn

from .ms_deform_attn_func import (
    BACKENDS,
    multi_scale_deformable_attn,
    multi_scale_deformable_attn_pytorch,
)

__all__ = ["MSDeformAttn", "multi_scale_deformable_attn", "multi_scale_deformable_attn_pytorch"]

AttentionLogitFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class MSDeformAttn(nn.Module):
    """Multi-scale deformable attention.

    Every query predicts, per head ``m``, level ``l`` and point ``p``, a sampling offset and an
    attention logit; the logits are softmax-normalised over the ``L * P`` points of a head and
    the sampled values summed with those weights.

    Args:
        d_model: channels of queries and values (divisible by ``n_heads``).
        n_levels: number of feature levels ``L``.
        n_heads: number of heads ``M``.
        n_points: sampling points per head and level ``P``.
        backend: op backend, ``"auto"`` | ``"pytorch"`` | ``"cpu"`` | ``"cuda"`` (see
            :func:`multi_scale_deformable_attn`).

    Initialisation (Deformable-DETR): sampling-offset weights are 0 and their bias puts point
    ``p`` of head ``h`` at ``(p + 1) * (cos θ_h, sin θ_h) / max(|cos θ_h|, |sin θ_h|)`` with
    ``θ_h = 2π h / M``; attention weights and bias are 0 (uniform attention); value and output
    projections are Xavier-uniform with zero bias.
    """

    def __init__(self, d_model: int = 256, n_levels: int = 4, n_heads: int = 8, n_points: int = 4,
                 backend: str = "auto"):
        super().__init__()
        if d_model % n_heads != 0:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.d_model = d_model
        self.n_levels = n_levels
        self.n_heads = n_heads
        self.n_points = n_points
        self.backend = backend
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        nn.init.constant_(self.sampling_offsets.weight, 0.0)
        thetas = torch.arange(self.n_heads, dtype=torch.float32) * (2.0 * math.pi / self.n_heads)
        grid = torch.stack([thetas.cos(), thetas.sin()], -1)  # M x 2
        grid = grid / grid.abs().max(-1, keepdim=True)[0]
        grid = grid.view(self.n_heads, 1, 1, 2).repeat(1, self.n_levels, self.n_points, 1)
        grid = grid * torch.arange(1, self.n_points + 1, dtype=torch.float32).view(1, 1, -1, 1)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.reshape(-1))
        nn.init.constant_(self.attention_weights.weight, 0.0)
        nn.init.constant_(self.attention_weights.bias, 0.0)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.constant_(self.value_proj.bias, 0.0)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.constant_(self.output_proj.bias, 0.0)

    def extra_repr(self) -> str:
        """Module summary: sizes, levels, heads, points and backend."""
        return (f"d_model={self.d_model}, n_levels={self.n_levels}, n_heads={self.n_heads}, "
                f"n_points={self.n_points}, backend={self.backend!r}")

    def _reference_points(self, reference_points: torch.Tensor, N: int, Lq: int) -> torch.Tensor:
        """Normalise reference points to ``N x Lq x L x C`` (C = 2 or 4)."""
        L = self.n_levels
        shape = tuple(reference_points.shape)
        if reference_points.dim() == 3 and shape[:2] == (N, Lq) and shape[2] in (2, 4):
            return reference_points.unsqueeze(2).expand(N, Lq, L, shape[2])
        if reference_points.dim() == 4 and shape[:3] == (N, Lq, L) and shape[3] in (2, 4):
            return reference_points
        raise ValueError(
            f"reference_points must have shape N x Lq x L x 2 (points), N x Lq x L x 4 (boxes "
            f"cx, cy, w, h), or N x Lq x 2 / N x Lq x 4 (shared by all levels) with N={N}, "
            f"Lq={Lq}, L={L}; got {shape}"
        )

    def forward(
        self,
        query: torch.Tensor,
        reference_points: torch.Tensor,
        input_flatten: torch.Tensor,
        input_spatial_shapes: torch.Tensor,
        input_level_start_index: torch.Tensor,
        input_padding_mask: Optional[torch.Tensor] = None,
        attention_logit_fn: Optional[AttentionLogitFn] = None,
    ) -> torch.Tensor:
        """
        Args:
            query: ``N x Lq x C`` (C = d_model), with its position embedding already added.
            reference_points: normalised to ``[0, 1]`` (top-left ``(0, 0)``, bottom-right
                ``(1, 1)``): ``N x Lq x L x 2`` points ``(x, y)`` — sampling locations are
                ``ref + offset / (W_l, H_l)`` — or ``N x Lq x L x 4`` boxes ``(cx, cy, w, h)`` —
                locations ``ref_xy + offset / P * ref_wh * 0.5``. ``N x Lq x 2`` /
                ``N x Lq x 4`` are shared by all levels.
            input_flatten: ``N x S x C``, all levels flattened and concatenated,
                ``S = sum_l H_l * W_l``.
            input_spatial_shapes: ``L x 2`` int64 ``(H_l, W_l)``.
            input_level_start_index: ``L`` int64, start of each level in ``S``.
            input_padding_mask: ``N x S`` bool, True at padded positions (their values are
                zeroed), or None.
            attention_logit_fn: optional ``fn(logits, sampling_locations) -> logits`` applied to
                the attention logits ``N x Lq x M x (L * P)`` before the softmax over ``L * P``;
                ``sampling_locations`` is ``N x Lq x M x L x P x 2``. Used e.g. to gate the
                attention with a mask (add ``-inf`` to exclude points).

        Returns:
            ``N x Lq x C``.
        """
        if query.dim() != 3 or query.shape[-1] != self.d_model:
            raise ValueError(f"query must have shape N x Lq x {self.d_model}, got {tuple(query.shape)}")
        N, Lq, _ = query.shape
        if input_flatten.dim() != 3 or input_flatten.shape[0] != N or input_flatten.shape[-1] != self.d_model:
            raise ValueError(
                f"input_flatten must have shape {N} x S x {self.d_model}, got {tuple(input_flatten.shape)}"
            )
        S = input_flatten.shape[1]
        M, L, P = self.n_heads, self.n_levels, self.n_points
        shapes = torch.as_tensor(input_spatial_shapes, dtype=torch.long, device=query.device)
        if shapes.shape != (L, 2):
            raise ValueError(f"input_spatial_shapes must have shape {L} x 2, got {tuple(shapes.shape)}")

        value = self.value_proj(input_flatten)
        if input_padding_mask is not None:
            if input_padding_mask.shape != (N, S):
                raise ValueError(f"input_padding_mask must have shape {N} x {S}, got "
                                 f"{tuple(input_padding_mask.shape)}")
            value = value.masked_fill(input_padding_mask[..., None].bool(), 0.0)
        value = value.view(N, S, M, self.d_model // M)

        offsets = self.sampling_offsets(query).view(N, Lq, M, L, P, 2)
        logits = self.attention_weights(query).view(N, Lq, M, L * P)
        ref = self._reference_points(reference_points, N, Lq)
        if ref.shape[-1] == 2:
            # offsets are in pixels of each level: divide by (W_l, H_l)
            normalizer = torch.stack([shapes[:, 1], shapes[:, 0]], -1).to(offsets.dtype)
            sampling_locations = (ref[:, :, None, :, None, :]
                                  + offsets / normalizer[None, None, None, :, None, :])
        else:
            sampling_locations = (ref[:, :, None, :, None, :2]
                                  + offsets / P * ref[:, :, None, :, None, 2:] * 0.5)

        if attention_logit_fn is not None:
            gated = attention_logit_fn(logits, sampling_locations)
            if not isinstance(gated, torch.Tensor) or gated.shape != logits.shape:
                raise ValueError(
                    f"attention_logit_fn must return logits of shape {tuple(logits.shape)}, got "
                    f"{tuple(gated.shape) if isinstance(gated, torch.Tensor) else type(gated).__name__}"
                )
            logits = gated
        attention_weights = logits.softmax(-1).view(N, Lq, M, L, P)

        output = multi_scale_deformable_attn(value, shapes, input_level_start_index,
                                             sampling_locations, attention_weights,
                                             backend=self.backend)
        return self.output_proj(output)
