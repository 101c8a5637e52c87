"""Per-pixel distribution losses: cross-entropy, focal, the class-weighted CE × focal product and
sigmoid BCE. Each averages a per-pixel (softmax) or per-pixel-per-class (sigmoid) loss over the
valid pixels and returns 0 with a gradient path when none is valid (never NaN).

Class weights (``class_weights``, one per scored channel) multiply the loss of the pixels of
that class (softmax: the pixel's label; sigmoid: each class channel). ``reduction``
(``MODEL.LOSS.PIXEL_REDUCTION``): ``"mean"`` divides by the number of valid pixels (× classes), so
normalised weights also scale the loss; ``"weighted_mean"`` divides by the summed weights of the
valid elements (torch's weighted ``cross_entropy`` mean).
"""
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.ops import sigmoid_focal_loss

from skinformer.config import configurable
from skinformer.layers.softplus import binary_cross_entropy_with_logits

from .build import LOSS_REGISTRY
from .targets import PreparedTargets, as_weight_tensor, prepare_targets, select_class_weights

_REDUCTIONS = ("mean", "weighted_mean")

__all__ = ["PixelLoss", "CrossEntropyLoss", "FocalLoss", "SigmoidFocalLoss", "WeightedCEFocalLoss", "BCELoss"]


class PixelLoss(nn.Module):
    """Base: ``forward(logits B×C×H×W, target label map B×H×W | masks B×K×H×W, valid=None)`` -> scalar.

    Subclasses implement :meth:`pixel_loss` returning the unweighted loss map (B×H×W for softmax,
    B×K×H×W for sigmoid) and may use :meth:`weight_map`.
    """

    def __init__(self, *, activation: str = "softmax", class_weights: Optional[Sequence[float]] = None,
                 ignore_index: int = 255, reduction: str = "mean"):
        super().__init__()
        if reduction not in _REDUCTIONS:
            raise ValueError(f"MODEL.LOSS.PIXEL_REDUCTION must be one of {_REDUCTIONS}, got '{reduction}'")
        self.activation = activation
        self.ignore_index = ignore_index
        self.reduction = reduction
        w = as_weight_tensor(class_weights)
        # not persistent: weights come from the config (or the training set), not from checkpoints
        self.register_buffer("class_weights", w, persistent=False)

    def weight_map(self, p: PreparedTargets) -> Optional[torch.Tensor]:
        """Per-element class weight broadcastable to the loss map, or None."""
        if self.class_weights is None:
            return None
        if p.activation == "softmax":
            w = select_class_weights(self.class_weights, p.logits.shape[1]).to(p.logits.device)
            return w[p.labels]
        w = select_class_weights(self.class_weights, p.logits.shape[1]).to(p.logits.device)
        return w.view(1, -1, 1, 1)

    def pixel_loss(self, p: PreparedTargets) -> torch.Tensor:
        """Per-element loss map before invalid pixels are masked out: ``B×H×W`` (softmax) or ``B×K×H×W``
        (sigmoid). Subclasses must implement it."""
        raise NotImplementedError

    def forward(self, logits: torch.Tensor, target: torch.Tensor, valid: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Mean of :meth:`pixel_loss` over valid pixels (class-weighted mean if ``reduction`` is
        ``weighted_mean``): a scalar; 0 (in the graph) when no pixel is valid."""
        p = prepare_targets(logits, target, self.activation, self.ignore_index, valid)
        if not p.valid.any():
            return logits.sum() * 0.0
        loss = self.pixel_loss(p)
        v = p.valid.unsqueeze(1) if loss.dim() == 4 else p.valid  # sigmoid: over pixels and classes
        v = v.to(loss.dtype).expand_as(loss)
        w = self.weight_map(p) if self.reduction == "weighted_mean" else None
        denom = v.sum() if w is None else (v * w).sum().clamp(min=1e-12)
        return (loss * v).sum() / denom



def _common_from_config(cfg):
    return {"ignore_index": cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE, "reduction": cfg.MODEL.LOSS.PIXEL_REDUCTION}


def _ce_map(p: PreparedTargets) -> torch.Tensor:
    if p.activation == "softmax":
        return F.cross_entropy(p.logits.float(), p.labels, reduction="none")
    return binary_cross_entropy_with_logits(p.logits.float(), p.onehot.float(), reduction="none")


@LOSS_REGISTRY.register()
class CrossEntropyLoss(PixelLoss):
    """Class-weighted cross-entropy ``w_y · -log p_y`` (softmax), or class-weighted per-class
    BCE for sigmoid / per-class mask targets."""

    short_name = "ce"

    @configurable
    def __init__(self, **kwargs):
        super().__init__(**kwargs)

    @classmethod
    def from_config(cls, cfg):
        """``ignore_index`` and ``reduction`` from ``cfg``."""
        return _common_from_config(cfg)

    def pixel_loss(self, p):
        """Per-pixel CE (softmax) or per-class BCE (sigmoid), times the class weights if set."""
        loss = _ce_map(p)
        w = self.weight_map(p)
        return loss if w is None else loss * w


@LOSS_REGISTRY.register()
class BCELoss(CrossEntropyLoss):
    """Per-class sigmoid BCE (``K`` independent sigmoids; multi-label capable), class-weighted."""

    short_name = "bce"

    @configurable
    def __init__(self, **kwargs):
        kwargs["activation"] = "sigmoid"
        super().__init__(**kwargs)

    @classmethod
    def from_config(cls, cfg):
        """``ignore_index`` and ``reduction`` from ``cfg``."""
        return _common_from_config(cfg)


@LOSS_REGISTRY.register()
class FocalLoss(PixelLoss):
    """Focal loss (Lin et al.). Softmax: ``-w_y (1 - p_y)^γ log p_y`` (class weights play the
    role of α). Sigmoid: torchvision's ``sigmoid_focal_loss`` with ``alpha`` (< 0: no α) times
    the class weights."""

    short_name = "focal"

    @configurable
    def __init__(self, *, gamma: float = 2.0, alpha: float = -1.0, **kwargs):
        super().__init__(**kwargs)
        if gamma < 0:
            raise ValueError(f"MODEL.SEM_SEG_HEAD.FOCAL_GAMMA must be >= 0, got {gamma}")
        self.gamma = float(gamma)
        self.alpha = float(alpha)

    @classmethod
    def from_config(cls, cfg):
        """``ignore_index``, ``reduction``, ``gamma`` and ``alpha`` from ``cfg``."""
        return {**_common_from_config(cfg), "gamma": cfg.MODEL.SEM_SEG_HEAD.FOCAL_GAMMA, "alpha": cfg.MODEL.LOSS.FOCAL_ALPHA}

    def pixel_loss(self, p):
        """Per-pixel focal loss (softmax: ``-(1 - p_y)^γ log p_y``; sigmoid: per-class), times the class
        weights if set."""
        if p.activation == "softmax":
            logp = F.log_softmax(p.logits.float(), dim=1).gather(1, p.labels.unsqueeze(1)).squeeze(1)
            loss = -((1.0 - logp.exp()) ** self.gamma) * logp
        else:
            loss = sigmoid_focal_loss(p.logits.float(), p.onehot.float(), alpha=self.alpha, gamma=self.gamma,
                                      reduction="none")
        w = self.weight_map(p)
        return loss if w is None else loss * w


@LOSS_REGISTRY.register()
class SigmoidFocalLoss(FocalLoss):
    """:class:`FocalLoss` always on sigmoids, also for label maps: the K class logits each
    against their one-hot channel (the original SegFormer project's focal term on the lesion logit)."""

    short_name = "sigmoid_focal"

    @configurable
    def __init__(self, **kwargs):
        kwargs["activation"] = "sigmoid"
        super().__init__(**kwargs)

    @classmethod
    def from_config(cls, cfg):
        """As :meth:`FocalLoss.from_config`."""
        return FocalLoss.from_config.__func__(cls, cfg)


@LOSS_REGISTRY.register()
class WeightedCEFocalLoss(PixelLoss):
    """Class-weighted CE modulated by focal weighting of the *weighted* loss:
    ``l = w_y · CE``, ``p_t = exp(-l)``, loss ``(1 - p_t)^γ · l`` (the class weight also enters
    ``p_t``, as in the Inception-U-Net attribute recipe). Sigmoid: the same on per-class BCE."""

    short_name = "weighted_ce_focal"

    @configurable
    def __init__(self, *, gamma: float = 2.0, **kwargs):
        super().__init__(**kwargs)
        self.gamma = float(gamma)

    @classmethod
    def from_config(cls, cfg):
        """``ignore_index``, ``reduction`` and ``gamma`` from ``cfg``."""
        return {**_common_from_config(cfg), "gamma": cfg.MODEL.SEM_SEG_HEAD.FOCAL_GAMMA}

    def pixel_loss(self, p):
        """``(1 - exp(-l))^γ · l`` with ``l`` the class-weighted CE (or BCE) map."""
        loss = _ce_map(p)
        w = self.weight_map(p)
        if w is not None:
            loss = loss * w
        return (1.0 - torch.exp(-loss)) ** self.gamma * loss
