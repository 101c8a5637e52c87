"""An auxiliary per-pixel loss on the mask features of a mask-classification model.

A mask transformer predicts each mask as the dot product of a query embedding with the per-pixel
mask features, so the features must first become linearly separable by class before any query can
use them. From a pretrained backbone that takes many iterations when the only signal is the
point-sampled loss of the matched queries. A 1×1 classifier on the mask features trained with
BCE + Dice against the per-class union of the ground-truth masks gives every pixel a direct
gradient from the first step. It is used in training only: inference and the predicted masks are
unchanged, and the classifier's weights are never read by the decoder.
"""
from typing import Dict, List

import torch
import torch.nn as nn
import torch.nn.functional as F

from .mask_losses import sigmoid_ce_dice_loss

__all__ = ["PixelAuxiliaryLoss"]


class PixelAuxiliaryLoss(nn.Module):
    """BCE + Dice of a 1×1 classifier on the mask features against class-union targets.

    Args:
        mask_dim: channels D of the mask features.
        num_classes: K (one sigmoid output per class).
        weight: multiplies the returned loss.
    """

    def __init__(self, mask_dim: int, num_classes: int, weight: float):
        super().__init__()
        self.classifier = nn.Conv2d(mask_dim, num_classes, kernel_size=1)
        nn.init.normal_(self.classifier.weight, std=0.01)
        nn.init.constant_(self.classifier.bias, 0.0)
        self.num_classes = num_classes
        self.weight = float(weight)

    def class_targets(self, targets: List[Dict[str, torch.Tensor]], size) -> torch.Tensor:
        """``B×K×h×w`` fraction of each class per feature cell from the per-instance padded masks."""
        out = []
        for t in targets:
            masks, labels = t["masks"], t["labels"]
            # summing the instances of a class and clamping at 1 is their union for binary masks
            onehot = F.one_hot(labels, self.num_classes).to(masks.dtype).t()  # K×N
            union = (onehot @ masks.flatten(1)).clamp_(max=1.0)
            out.append(union.view((self.num_classes,) + tuple(masks.shape[-2:])))
        # "area" averages the full-resolution masks over each stride-s cell: soft boundary targets.
        return F.interpolate(torch.stack(out), size=tuple(size), mode="area")

    def forward(self, mask_features: torch.Tensor, targets: List[Dict[str, torch.Tensor]]) -> Dict[str, torch.Tensor]:
        """
        Args:
            mask_features: ``B×D×h×w`` (stride 4 of the padded batch).
            targets: per image ``{"labels": N, "masks": N×Hp×Wp}`` (as the criterion gets them).
        Returns:
            ``{"loss_pixel_aux": weighted scalar}``.
        """
        logits = self.classifier(mask_features).float()
        with torch.autocast(device_type=logits.device.type, enabled=False):
            target = self.class_targets(targets, logits.shape[-2:]).to(logits.dtype)
            flat_logits, flat_target = logits.flatten(0, 1), target.flatten(0, 1)
            n = float(flat_logits.shape[0])
            loss = sum(sigmoid_ce_dice_loss(flat_logits, flat_target, n))
        return {"loss_pixel_aux": loss * self.weight}
