"""Per-pixel segmentation losses (cross-entropy, soft Dice, focal, sigmoid BCE), all honouring an
ignore label, and the LOSS_TYPE table used by :class:`PerPixelSegmentor`.

Conventions: ``logits`` are ``B×(K+1)×H×W`` (the last channel is "no class"), ``target`` is an
int64 ``B×H×W`` label map with values ``0..K`` or ``ignore_index``. Every loss returns a scalar
that is 0 (with a gradient path) when no pixel is valid, never NaN.
"""
from typing import Dict, Optional

import torch
import torch.nn.functional as F

__all__ = [
    "cross_entropy_loss",
    "soft_dice_loss",
    "softmax_focal_loss",
    "sigmoid_bce_loss",
    "sigmoid_dice_loss",
    "sigmoid_focal_loss",
    "PER_PIXEL_LOSSES",
    "MULTI_LABEL_LOSSES",
    "SIGMOID_LOSS_TYPES",
]


def _zero(logits: torch.Tensor) -> torch.Tensor:
    # Keeps the graph connected so DDP / the optimizer see every parameter.
    return logits.sum() * 0.0


def cross_entropy_loss(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = 255) -> torch.Tensor:
    """Mean softmax cross-entropy over non-ignored pixels."""
    valid = target != ignore_index
    if not valid.any():
        return _zero(logits)
    return F.cross_entropy(logits, target, ignore_index=ignore_index, reduction="sum") / valid.sum()


def softmax_focal_loss(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = 255,
                       gamma: float = 2.0) -> torch.Tensor:
    """Mean of ``-(1 - p_t)^gamma · log p_t`` over non-ignored pixels (Lin et al., softmax form)."""
    valid = target != ignore_index
    if not valid.any():
        return _zero(logits)
    logp = F.log_softmax(logits.float(), dim=1)
    t = torch.where(valid, target, torch.zeros_like(target))
    logp_t = logp.gather(1, t.unsqueeze(1)).squeeze(1)
    loss = -((1.0 - logp_t.exp()) ** gamma) * logp_t
    return (loss * valid).sum() / valid.sum()


def _dice_from_probs(probs: torch.Tensor, onehot: torch.Tensor, valid: torch.Tensor, smooth: float) -> torch.Tensor:
    """``1 - mean_c (2·Σ p·g + s) / (Σ p + Σ g + s)``; sums over batch and pixels (pooled per class)."""
    v = valid.unsqueeze(1).to(probs.dtype)
    probs = probs * v
    onehot = onehot * v
    inter = (probs * onehot).sum(dim=(0, 2, 3))
    denom = probs.sum(dim=(0, 2, 3)) + onehot.sum(dim=(0, 2, 3))
    return 1.0 - ((2.0 * inter + smooth) / (denom + smooth)).mean()


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = 255,
                   smooth: float = 1.0) -> torch.Tensor:
    """Soft Dice on softmax probabilities of the K classes (the "no class" channel excluded, so a
    binary task scores the lesion only), pooled over the batch per class and averaged over classes."""
    valid = target != ignore_index
    if not valid.any():
        return _zero(logits)
    num_out = logits.shape[1]
    probs = F.softmax(logits.float(), dim=1)[:, : num_out - 1]
    t = torch.where(valid, target, torch.full_like(target, num_out - 1))
    onehot = F.one_hot(t, num_out).permute(0, 3, 1, 2)[:, : num_out - 1].to(probs.dtype)
    return _dice_from_probs(probs, onehot, valid, smooth)


def _sigmoid_targets(target: torch.Tensor, num_classes: int, ignore_index: int,
                     label_masks: Optional[torch.Tensor]):
    valid = target != ignore_index
    if label_masks is not None:
        return label_masks.float(), valid
    t = torch.where(valid, target, torch.full_like(target, num_classes))
    return F.one_hot(t, num_classes + 1).permute(0, 3, 1, 2)[:, :num_classes].float(), valid


def sigmoid_bce_loss(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = 255,
                     label_masks: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Per-class sigmoid BCE on the first K logits (multi-label capable). Targets are ``label_masks``
    (``B×K×H×W``, may overlap) when given, else the one-hot of ``target``; pixels where ``target``
    is ``ignore_index`` are excluded."""
    num_classes = logits.shape[1] - 1
    onehot, valid = _sigmoid_targets(target, num_classes, ignore_index, label_masks)
    if not valid.any():
        return _zero(logits)
    loss = F.binary_cross_entropy_with_logits(logits[:, :num_classes].float(), onehot, reduction="none")
    return (loss * valid.unsqueeze(1)).sum() / (valid.sum() * num_classes)


def sigmoid_dice_loss(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = 255,
                      label_masks: Optional[torch.Tensor] = None, smooth: float = 1.0) -> torch.Tensor:
    """Soft Dice on per-class sigmoid probabilities of the first K logits (see :func:`sigmoid_bce_loss`)."""
    num_classes = logits.shape[1] - 1
    onehot, valid = _sigmoid_targets(target, num_classes, ignore_index, label_masks)
    if not valid.any():
        return _zero(logits)
    return _dice_from_probs(torch.sigmoid(logits[:, :num_classes].float()), onehot, valid, smooth)


def sigmoid_focal_loss(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = 255,
                       label_masks: Optional[torch.Tensor] = None, gamma: float = 2.0,
                       alpha: float = 0.25) -> torch.Tensor:
    """Per-class sigmoid focal loss (torchvision's, alpha 0.25) on the first K logits, averaged over
    valid pixels and classes (targets as in :func:`sigmoid_bce_loss`)."""
    from torchvision.ops import sigmoid_focal_loss as tv_focal

    num_classes = logits.shape[1] - 1
    onehot, valid = _sigmoid_targets(target, num_classes, ignore_index, label_masks)
    if not valid.any():
        return _zero(logits)
    loss = tv_focal(logits[:, :num_classes].float(), onehot, alpha=alpha, gamma=gamma, reduction="none")
    return (loss * valid.unsqueeze(1)).sum() / (valid.sum() * num_classes)


# LOSS_TYPE -> {loss name: (function, which weight)}. Functions take
# (logits, target, ignore_index, label_masks, gamma) through the adapters below.
def _ce(lg, t, ig, lm, gamma):
    return cross_entropy_loss(lg, t, ig)


def _dice(lg, t, ig, lm, gamma):
    return soft_dice_loss(lg, t, ig)


def _focal(lg, t, ig, lm, gamma):
    return softmax_focal_loss(lg, t, ig, gamma)


def _bce(lg, t, ig, lm, gamma):
    return sigmoid_bce_loss(lg, t, ig, lm)


def _sdice(lg, t, ig, lm, gamma):
    return sigmoid_dice_loss(lg, t, ig, lm)


PER_PIXEL_LOSSES: Dict[str, Dict[str, tuple]] = {
    "ce": {"loss_ce": (_ce, "main")},
    "ce+dice": {"loss_ce": (_ce, "main"), "loss_dice": (_dice, "dice")},
    "focal+dice": {"loss_focal": (_focal, "main"), "loss_dice": (_dice, "dice")},
    "focal": {"loss_focal": (_focal, "main")},
    "bce": {"loss_bce": (_bce, "main")},
    "bce+dice": {"loss_bce": (_bce, "main"), "loss_dice": (_sdice, "dice")},
}

def _sfocal(lg, t, ig, lm, gamma):
    return sigmoid_focal_loss(lg, t, ig, lm, gamma)


# Multi-label data (attributes overlap, targets are ``label_masks``): every LOSS_TYPE becomes its
# per-attribute sigmoid counterpart, so naming a multi-label dataset is enough (CE -> BCE).
MULTI_LABEL_LOSSES: Dict[str, Dict[str, tuple]] = {
    "ce": {"loss_bce": (_bce, "main")},
    "bce": {"loss_bce": (_bce, "main")},
    "ce+dice": {"loss_bce": (_bce, "main"), "loss_dice": (_sdice, "dice")},
    "bce+dice": {"loss_bce": (_bce, "main"), "loss_dice": (_sdice, "dice")},
    "focal": {"loss_focal": (_sfocal, "main")},
    "focal+dice": {"loss_focal": (_sfocal, "main"), "loss_dice": (_sdice, "dice")},
}
# Loss types whose classes are independent sigmoids: inference emits sigmoid(logits[:K]).
SIGMOID_LOSS_TYPES = {"bce", "bce+dice"}
