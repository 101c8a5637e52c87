"""Loss and pairwise-cost functions on point-sampled masks and class logits.

Losses (``*_loss``) take matched ``N×P`` pairs and return scalars summed over pairs and divided
by ``num_masks`` (:func:`sigmoid_ce_dice_loss` returns its two losses together). Costs
(``batch_*_cost``) take ``Q×P`` predictions and ``T×P`` targets and return a ``Q×T`` matrix for the
Hungarian matcher. All work in the inputs' dtype and device; call them in
float32 (autocast disabled) for stable logs.
"""
from typing import Tuple

import torch
from torch.autograd.function import once_differentiable

from skinformer.layers.softplus import binary_cross_entropy_with_logits, softplus

__all__ = [
    "sigmoid_ce_dice_loss", "sigmoid_focal_loss",
    "batch_dice_cost", "batch_sigmoid_ce_cost", "focal_class_cost", "softmax_class_cost",
]


class _SigmoidCEDiceLoss(torch.autograd.Function):
    """Both mask losses of ``N×P`` logits in one pass, with a hand-written backward.

    Autograd would keep the BCE map, recompute the sigmoid in the BCE backward and run the dice
    backward through five more ``N×P`` maps; here forward keeps only ``σ(logits)`` and backward
    computes the gradient of both losses in a handful of element-wise passes:

    * BCE: ``∂/∂x = (σ - t) / (P · num_masks)``;
    * dice, per pair with ``D = Σσ + Σt + 1`` and ``I = Σσt``: ``∂/∂σ = ((2I + 1) / D² - 2t / D) / num_masks``,
      times ``σ(1 - σ)``.
    """

    @staticmethod
    def forward(ctx, logits, targets, num_masks: float):
        num_points = logits.shape[1]
        probs = logits.sigmoid()
        bce = binary_cross_entropy_with_logits(logits, targets, reduction="sum") / num_points / num_masks
        intersection = (probs * targets).sum(-1)
        denominator = probs.sum(-1) + targets.sum(-1) + 1
        dice = (1 - (2 * intersection + 1) / denominator).sum() / num_masks
        ctx.save_for_backward(probs, targets, intersection, denominator)
        ctx.num_masks = num_masks
        return bce, dice

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_bce, grad_dice):
        probs, targets, intersection, denominator = ctx.saved_tensors
        num_points = probs.shape[1]
        grad_logits = None
        if ctx.needs_input_grad[0]:
            scale_dice = (grad_dice / ctx.num_masks).to(probs.dtype)
            # dice: σ(1 - σ) · (a - b·t) per pair, a = (2I + 1) / D², b = 2 / D
            a = (scale_dice * (2 * intersection + 1) / denominator.square())[:, None]
            b = (scale_dice * 2 / denominator)[:, None]
            grad_logits = torch.addcmul(a, b, targets, value=-1)
            grad_logits.mul_(probs - probs.square())
            # BCE: (σ - t) / (P · num_masks)
            grad_logits.add_((probs - targets).mul_(grad_bce / (num_points * ctx.num_masks)))
        return grad_logits, None, None


def sigmoid_ce_dice_loss(logits: torch.Tensor, targets: torch.Tensor, num_masks: float
                         ) -> Tuple[torch.Tensor, torch.Tensor]:
    """The two mask losses of matched pairs, ``(bce, dice)``, from one pass over the maps.

    * ``bce = Σ_pairs mean_points BCE-with-logits / num_masks``;
    * ``dice = Σ_pairs (1 - (2·Σσ·t + 1) / (Σσ + Σt + 1)) / num_masks``.

    Args:
        logits: ``N×P`` (or ``N×...``, flattened per pair) mask logits.
        targets: the same shape, in [0, 1]; no gradient flows to them.
    """
    if targets.requires_grad:
        raise ValueError("sigmoid_ce_dice_loss: the targets require grad; they are ground truth (detach them)")
    if logits.shape != targets.shape:
        raise ValueError(f"sigmoid_ce_dice_loss: logits {tuple(logits.shape)} and targets {tuple(targets.shape)} "
                         "must have the same shape")
    logits = logits.flatten(1)
    targets = targets.flatten(1).to(logits.dtype)
    return _SigmoidCEDiceLoss.apply(logits, targets, float(num_masks))


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, num_masks: float,
                       alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    """Element-wise sigmoid focal loss (RetinaNet), summed over all elements / num_masks.

    Args:
        logits, targets: same shape (e.g. ``B×Q×K`` and its one-hot target).
        alpha: weight of positives (negatives get ``1 - alpha``); < 0 disables it.
    """
    prob = logits.sigmoid()
    ce = binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = ce * ((1 - p_t) ** gamma)
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss.sum() / num_masks


def batch_dice_cost(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Pairwise dice cost ``1 - (2·Σσt + 1)/(Σσ + Σt + 1)``: ``Q×P``, ``T×P`` -> ``Q×T``."""
    probs = logits.sigmoid().flatten(1)
    numerator = 2 * torch.einsum("qp,tp->qt", probs, targets)
    denominator = probs.sum(-1)[:, None] + targets.sum(-1)[None, :]
    return 1 - (numerator + 1) / (denominator + 1)


def batch_sigmoid_ce_cost(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Pairwise mean-over-points BCE-with-logits: ``Q×P``, ``T×P`` -> ``Q×T``."""
    # BCE(x, t) = softplus(x) - x·t, so Σ_p BCE(x_qp, t_tp) = Σ_p softplus(x_qp) - (x @ tᵀ)_qt:
    # one softplus and one product instead of the two BCE maps and products of Mask2Former's
    # form (the same value up to float32 round-off).
    num_points = logits.shape[1]
    loss = softplus(logits).sum(-1, keepdim=True) - logits @ targets.to(logits.dtype).t()
    return loss / num_points


def focal_class_cost(logits: torch.Tensor, tgt_ids: torch.Tensor, alpha: float = 0.25,
                     gamma: float = 2.0) -> torch.Tensor:
    """Focal-style class cost (Deformable-DETR): ``Q×C`` logits, ``T`` class ids -> ``Q×T``.

    Only the first ``C'`` columns that ids index are used, so ``Q×(K+1)`` CE logits can be passed
    (the original implementation's quirk: sigmoid of softmax-trained logits).
    """
    prob = logits.sigmoid()
    neg = (1 - alpha) * (prob ** gamma) * (-(1 - prob + 1e-8).log())
    pos = alpha * ((1 - prob) ** gamma) * (-(prob + 1e-8).log())
    return pos[:, tgt_ids] - neg[:, tgt_ids]


def softmax_class_cost(logits: torch.Tensor, tgt_ids: torch.Tensor) -> torch.Tensor:
    """``-softmax(logits)[:, id]`` (DETR / Mask2Former): ``Q×(K+1)`` logits, ``T`` ids -> ``Q×T``."""
    return -logits.softmax(-1)[:, tgt_ids]
