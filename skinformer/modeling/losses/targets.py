"""Turn a loss call's target into what the loss families need.

Two target forms are accepted by every loss in :data:`LOSS_REGISTRY`:

* a **label map**: int64 ``B×H×W`` with values ``0..C-1`` (``C`` = logit channels; per-pixel
  models predict ``K + 1`` channels, the last one "no class") or ``ignore_index``. Scored with a
  softmax over the ``C`` channels, or (``activation="sigmoid"``) as ``K = C - 1`` independent
  sigmoids against the one-hot of the first ``K`` labels;
* **per-class masks**: float / bool ``B×K×H×W`` (may overlap: multi-label attributes). Always
  scored with sigmoids of the first ``K`` logit channels (the logits have ``K`` or ``K + 1``
  channels). ``valid`` (bool ``B×H×W``) may exclude pixels, e.g. padding.
"""
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

__all__ = ["PreparedTargets", "prepare_targets", "select_class_weights", "is_label_map", "ACTIVATIONS"]

ACTIVATIONS = ("softmax", "sigmoid")


@dataclass
class PreparedTargets:
    """``logits`` B×C'×H×W (the channels the loss scores), ``onehot`` float B×C'×H×W,
    ``labels`` int64 B×H×W (softmax only, ignored pixels set to 0), ``valid`` bool B×H×W,
    ``activation`` ("softmax" | "sigmoid"), ``num_region_channels``: how many leading channels
    region losses (Dice, Jaccard, Tversky) score (softmax: the K classes, not "no class")."""

    logits: torch.Tensor
    onehot: torch.Tensor
    labels: Optional[torch.Tensor]
    valid: torch.Tensor
    activation: str
    num_region_channels: int

    def probs(self) -> torch.Tensor:
        """Float32 softmax (over channels) or sigmoid of ``logits``: ``B×C'×H×W``."""
        if self.activation == "softmax":
            return F.softmax(self.logits.float(), dim=1)
        return torch.sigmoid(self.logits.float())


def is_label_map(target: torch.Tensor) -> bool:
    """Whether ``target`` is a ``B×H×W`` integer label map (rather than ``B×C×H×W`` per-class masks)."""
    return target.dim() == 3 and not target.dtype.is_floating_point and target.dtype != torch.bool


def prepare_targets(logits: torch.Tensor, target: torch.Tensor, activation: str, ignore_index: int = 255,
                    valid: Optional[torch.Tensor] = None) -> PreparedTargets:
    """See the module docstring. ``logits``: B×C×H×W; ``target``: label map or per-class masks."""
    if logits.dim() != 4:
        raise ValueError(f"Loss logits must be B×C×H×W, got shape {tuple(logits.shape)}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"MODEL.LOSS.ACTIVATION must be one of {ACTIVATIONS}, got '{activation}'")
    b, c, h, w = logits.shape
    if is_label_map(target):
        if tuple(target.shape) != (b, h, w):
            raise ValueError(f"Label-map target of shape {tuple(target.shape)} does not match logits {tuple(logits.shape)}")
        ok = target != ignore_index
        if valid is not None:
            ok = ok & valid.bool()
        bad = ok & ((target < 0) | (target >= c))
        if bad.any():
            raise ValueError(f"Label map holds values {sorted(set(target[bad].unique().tolist()))[:5]} outside "
                             f"0..{c - 1} (logit channels) and ignore_index {ignore_index}")
        labels = torch.where(ok, target, torch.zeros_like(target)).long()
        onehot = F.one_hot(labels, c).permute(0, 3, 1, 2).to(logits.dtype if logits.is_floating_point() else torch.float)
        if activation == "softmax":
            if c < 2:
                raise ValueError("A softmax loss on a label map needs at least 2 logit channels (K classes + 'no class')")
            return PreparedTargets(logits, onehot, labels, ok, "softmax", c - 1)
        k = max(c - 1, 1)
        return PreparedTargets(logits[:, :k], onehot[:, :k], None, ok, "sigmoid", k)
    if target.dim() != 4 or target.shape[0] != b or tuple(target.shape[-2:]) != (h, w):
        raise ValueError(f"Per-class mask target must be B×K×H×W matching logits {tuple(logits.shape)}, "
                         f"got {tuple(target.shape)} ({target.dtype}); a label map must be an integer B×H×W tensor")
    k = target.shape[1]
    if c not in (k, k + 1):
        raise ValueError(f"Per-class masks have K={k} channels; logits must have K or K+1 channels, got {c}")
    ok = torch.ones((b, h, w), dtype=torch.bool, device=logits.device) if valid is None else valid.bool()
    return PreparedTargets(logits[:, :k], target.to(logits.dtype), None, ok, "sigmoid", k)


def select_class_weights(weights: Optional[torch.Tensor], num_channels: int,
                         key: str = "MODEL.LOSS.CLASS_WEIGHTS") -> Optional[torch.Tensor]:
    """Weights for ``num_channels`` scored channels: a vector of that length is used as is; one of
    ``num_channels + 1`` (label-map weights incl. "no class") is cut to the first ``num_channels``."""
    if weights is None:
        return None
    n = weights.numel()
    if n == num_channels:
        return weights
    if n == num_channels + 1:
        return weights[:num_channels]
    raise ValueError(f"{key} has {n} entries; this loss scores {num_channels} channels "
                     f"(expected {num_channels} or {num_channels + 1} incl. 'no class')")


def as_weight_tensor(weights: Optional[Sequence[float]]) -> Optional[torch.Tensor]:
    """Class weights as a float32 tensor; None for None or an empty list."""
    if weights is None or len(weights) == 0:
        return None
    return torch.as_tensor([float(x) for x in weights], dtype=torch.float32)
