"""Loss and pairwise-cost functions on point-sampled masks and class logits.

Losses (``*_loss``) take matched ``N×P`` pairs and return a scalar summed over pairs and divided
by ``num_masks``. Costs (``batch_*_cost``) take ``Q×P`` predictions and ``T×P`` targets and return
a ``Q×T`` matrix for the Hungarian matcher. All work in the inputs' dtype and device; call them in
float32 (autocast disabled) for stable logs.
"""
import torch
import torch.nn.functional as F

__all__ = [
    "dice_loss", "sigmoid_ce_loss", "sigmoid_focal_loss",
    "batch_dice_cost", "batch_sigmoid_ce_cost", "focal_class_cost", "softmax_class_cost",
]


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, num_masks: float) -> torch.Tensor:
    """Σ_pairs (1 - (2·Σσ·t + 1) / (Σσ + Σt + 1)) / num_masks for ``N×P`` logits and targets."""
    probs = logits.sigmoid().flatten(1)
    targets = targets.flatten(1)
    numerator = 2 * (probs * targets).sum(-1)
    denominator = probs.sum(-1) + targets.sum(-1)
    loss = 1 - (numerator + 1) / (denominator + 1)
    return loss.sum() / num_masks


def sigmoid_ce_loss(logits: torch.Tensor, targets: torch.Tensor, num_masks: float) -> torch.Tensor:
    """Σ_pairs mean_points BCE-with-logits / num_masks for ``N×P`` logits and targets."""
    loss = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return loss.mean(1).sum() / num_masks


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, num_masks: float,
                       alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    """Element-wise sigmoid focal loss (RetinaNet), summed over all elements / num_masks.

    Args:
        logits, targets: same shape (e.g. ``B×Q×K`` and its one-hot target).
        alpha: weight of positives (negatives get ``1 - alpha``); < 0 disables it.
    """
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
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
    # form (the same value up to float32 round-off; softplus is exact in float32 beyond 20).
    num_points = logits.shape[1]
    loss = F.softplus(logits).sum(-1, keepdim=True) - logits @ targets.to(logits.dtype).t()
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
