"""Soft region-overlap losses on probabilities: Dice, Jaccard (IoU) and Tversky.

For each scored class ``c`` (softmax on a label map: the K classes, "no class" excluded, so a
binary task scores the lesion only; sigmoid: every class channel) with soft intersection
``I = Σ p·g``, ``P = Σ p``, ``G = Σ g`` over valid pixels and smoothing ``s``:

* Dice     ``(2I + s) / (P + G + s)``
* Jaccard  ``(I + s) / (P + G - I + s)``
* Tversky  ``(I + s) / (I + α(P - I) + β(G - I) + s)`` (α weighs false positives, β false
  negatives; α = β = 0.5 is Dice up to smoothing, α = β = 1 Jaccard)

``reduction="pooled"`` sums over the whole batch (one score per class); ``"per_image"`` scores
each image and averages the per-image losses. The loss per class is ``1 - score``; classes are
combined by a (class-weighted) mean, or a weighted sum (``class_reduction="sum"``).
"""
from typing import Optional, Sequence

import torch
import torch.nn as nn

from skinformer.config import configurable

from .build import LOSS_REGISTRY
from .targets import as_weight_tensor, prepare_targets, select_class_weights

__all__ = ["RegionLoss", "DiceLoss", "JaccardLoss", "TverskyLoss"]

_REDUCTIONS = ("pooled", "per_image")
_CLASS_REDUCTIONS = ("mean", "sum")


class RegionLoss(nn.Module):
    """Base: ``forward(logits B×C×H×W, target, valid=None)`` -> scalar; subclasses define
    :meth:`score` from ``(I, P, G)`` tensors."""

    def __init__(self, *, activation: str = "softmax", class_weights: Optional[Sequence[float]] = None,
                 ignore_index: int = 255, smooth: float = 1.0, reduction: str = "pooled",
                 class_reduction: str = "mean"):
        super().__init__()
        if reduction not in _REDUCTIONS:
            raise ValueError(f"MODEL.LOSS.REGION_REDUCTION must be one of {_REDUCTIONS}, got '{reduction}'")
        if class_reduction not in _CLASS_REDUCTIONS:
            raise ValueError(f"MODEL.LOSS.CLASS_REDUCTION must be one of {_CLASS_REDUCTIONS}, got '{class_reduction}'")
        self.activation = activation
        self.ignore_index = ignore_index
        self.smooth = float(smooth)
        self.reduction = reduction
        self.class_reduction = class_reduction
        self.register_buffer("class_weights", as_weight_tensor(class_weights), persistent=False)

    @classmethod
    def from_config(cls, cfg):
        """``ignore_index``, ``smooth``, ``reduction`` and ``class_reduction`` from ``cfg``."""
        c = cfg.MODEL.LOSS
        return {"ignore_index": cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE, "smooth": c.REGION_SMOOTH,
                "reduction": c.REGION_REDUCTION, "class_reduction": c.CLASS_REDUCTION}

    def score(self, inter: torch.Tensor, psum: torch.Tensor, gsum: torch.Tensor) -> torch.Tensor:
        """Per-class score from intersection ``inter``, prediction sum ``psum`` and target sum ``gsum``
        (each ``K`` or ``B×K``). Subclasses must implement it."""
        raise NotImplementedError

    def forward(self, logits: torch.Tensor, target: torch.Tensor, valid: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``1 - score`` on soft predictions over valid pixels, class-weighted and reduced to a scalar
        (pooled over the batch or per image); 0 (in the graph) when no pixel is valid."""
        p = prepare_targets(logits, target, self.activation, self.ignore_index, valid)
        if not p.valid.any():
            return logits.sum() * 0.0
        k = p.num_region_channels
        v = p.valid.unsqueeze(1).float()
        probs = p.probs()[:, :k] * v
        gt = p.onehot[:, :k].float() * v
        dims = (0, 2, 3) if self.reduction == "pooled" else (2, 3)
        inter = (probs * gt).sum(dims)
        psum, gsum = probs.sum(dims), gt.sum(dims)
        score = self.score(inter, psum, gsum)  # K or B×K
        # nothing predicted, nothing there (e.g. an image without valid pixels, smooth 0): perfect, not 0/0
        score = torch.where((psum + gsum) > 0, score, torch.ones_like(score))
        loss = 1.0 - score
        w = select_class_weights(self.class_weights, k)
        w = torch.ones(k, device=loss.device) if w is None else w.to(loss.device)
        per = (loss * w).sum(-1)
        if self.class_reduction == "mean":
            per = per / w.sum().clamp(min=1e-12)
        if self.reduction == "per_image":
            # images without a valid pixel do not count
            has_valid = p.valid.flatten(1).any(1)
            return per[has_valid].mean()
        return per.mean()


@LOSS_REGISTRY.register()
class DiceLoss(RegionLoss):
    """Soft Dice loss ``1 - (2I + s) / (P + G + s)``."""

    short_name = "dice"

    @configurable
    def __init__(self, **kwargs):
        super().__init__(**kwargs)

    def score(self, inter, psum, gsum):
        """Soft Dice ``(2I + s) / (P + G + s)``."""
        return (2.0 * inter + self.smooth) / (psum + gsum + self.smooth)


@LOSS_REGISTRY.register()
class JaccardLoss(RegionLoss):
    """Soft Jaccard / IoU loss ``1 - (I + s) / (P + G - I + s)``."""

    short_name = "jaccard"

    @configurable
    def __init__(self, **kwargs):
        super().__init__(**kwargs)

    def score(self, inter, psum, gsum):
        """Soft IoU ``(I + s) / (P + G - I + s)``."""
        return (inter + self.smooth) / (psum + gsum - inter + self.smooth)


@LOSS_REGISTRY.register()
class TverskyLoss(RegionLoss):
    """Tversky loss ``1 - (I + s) / (I + α·FP + β·FN + s)``."""

    short_name = "tversky"

    @configurable
    def __init__(self, *, alpha: float = 0.5, beta: float = 0.5, **kwargs):
        super().__init__(**kwargs)
        if alpha < 0 or beta < 0:
            raise ValueError(f"MODEL.LOSS.TVERSKY_ALPHA/BETA must be >= 0, got {alpha}, {beta}")
        self.alpha = float(alpha)
        self.beta = float(beta)

    @classmethod
    def from_config(cls, cfg):
        """As :meth:`RegionLoss.from_config`, plus ``alpha`` and ``beta``."""
        return {**RegionLoss.from_config.__func__(cls, cfg), "alpha": cfg.MODEL.LOSS.TVERSKY_ALPHA,
                "beta": cfg.MODEL.LOSS.TVERSKY_BETA}

    def score(self, inter, psum, gsum):
        """Tversky index ``(I + s) / (I + α·FP + β·FN + s)``."""
        fp = psum - inter
        fn = gsum - inter
        return (inter + self.smooth) / (inter + self.alpha * fp + self.beta * fn + self.smooth)
