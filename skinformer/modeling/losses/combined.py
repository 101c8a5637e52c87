"""Fixed two-term losses the original recipes name as one loss: BCE + Dice and (sigmoid) focal + Dice.
Any other mix is a list in ``MODEL.LOSS.NAMES`` with ``MODEL.LOSS.WEIGHTS``."""
from typing import Optional

import torch
import torch.nn as nn

from skinformer.config import configurable

from .build import LOSS_REGISTRY
from .pixel_losses import BCELoss, SigmoidFocalLoss
from .region_losses import DiceLoss

__all__ = ["BCEDiceLoss", "FocalDiceLoss"]


@LOSS_REGISTRY.register()
class BCEDiceLoss(nn.Module):
    """``BCE + (1 - Dice)``, both on sigmoids (the Keras recipe halves it: weight 0.5)."""

    short_name = "bce_dice"

    @configurable
    def __init__(self, *, bce: nn.Module, dice: nn.Module):
        super().__init__()
        self.bce = bce
        self.dice = dice
        self.activation = "sigmoid"

    @classmethod
    def from_config(cls, cfg, class_weights=None, activation: str = "sigmoid", ignore_index: Optional[int] = None):
        """The BCE and sigmoid Dice terms built from ``cfg`` with the given class weights / ignore index."""
        kw = {"class_weights": class_weights}
        if ignore_index is not None:
            kw["ignore_index"] = ignore_index
        return {"bce": BCELoss(cfg, **kw), "dice": DiceLoss(cfg, activation="sigmoid", **kw)}

    def forward(self, logits: torch.Tensor, target: torch.Tensor, valid: Optional[torch.Tensor] = None):
        """``BCE + (1 - Dice)`` of ``B×C×H×W`` logits: a scalar."""
        return self.bce(logits, target, valid) + self.dice(logits, target, valid)


@LOSS_REGISTRY.register()
class FocalDiceLoss(nn.Module):
    """Sigmoid focal on the class logits + soft Dice with ``activation`` (softmax by default): the
    SegFormer skin recipe (focal γ 2, α 0.25 on the lesion logit; Dice on its softmax)."""

    short_name = "focal_dice"

    @configurable
    def __init__(self, *, focal: nn.Module, dice: nn.Module):
        super().__init__()
        self.focal = focal
        self.dice = dice
        self.activation = dice.activation

    @classmethod
    def from_config(cls, cfg, class_weights=None, activation: str = "softmax", ignore_index: Optional[int] = None):
        """The sigmoid focal term and a Dice term (with ``activation``) built from ``cfg`` with the given
        class weights / ignore index."""
        kw = {"class_weights": class_weights}
        if ignore_index is not None:
            kw["ignore_index"] = ignore_index
        return {"focal": SigmoidFocalLoss(cfg, **kw), "dice": DiceLoss(cfg, activation=activation, **kw)}

    def forward(self, logits: torch.Tensor, target: torch.Tensor, valid: Optional[torch.Tensor] = None):
        """``focal + (1 - Dice)`` of ``B×C×H×W`` logits: a scalar."""
        return self.focal(logits, target, valid) + self.dice(logits, target, valid)
