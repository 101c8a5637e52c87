"""Per-pixel segmentation baselines: backbone + a registered per-pixel head (FPN, DeepLabV3+,
U-Net, SegFormer) trained with CE / Dice / focal / BCE losses."""
import logging
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from skinformer.config import configurable
from skinformer.structures import ImageList

from ..backbone import Backbone, build_backbone, resolve_pixel_normalization
from ..per_pixel_losses import PER_PIXEL_LOSSES, SIGMOID_LOSS_TYPES
from ..postprocessing import sem_seg_postprocess
from ..sliding_window import SlidingWindow
from ..sem_seg_heads import build_sem_seg_head
from .build import META_ARCH_REGISTRY

__all__ = ["PerPixelSegmentor"]

logger = logging.getLogger(__name__)


@META_ARCH_REGISTRY.register()
class PerPixelSegmentor(nn.Module):
    """Normalise → pad → backbone → per-pixel head → logits ``B×(K+1)×H×W`` upsampled to the input.

    The last logit channel is "no class" (background when background is not one of the K classes).

    Args:
        backbone: a :class:`Backbone`.
        sem_seg_head: a head from ``SEM_SEG_HEAD_REGISTRY`` returning ``B×(K+1)×H/s×W/s``.
        num_classes: K.
        pixel_mean, pixel_std: per-channel normalisation in 0-255 units.
        ignore_value: label ignored by the losses.
        loss_type: a key of ``PER_PIXEL_LOSSES`` ("ce", "ce+dice", "focal+dice", "focal", "bce", "bce+dice").
        loss_weight: multiplies every loss term; ``dice_weight`` additionally the Dice term.
        focal_gamma: focusing parameter of the focal loss.
        size_divisibility: pad the batch to a multiple of this (raised to the backbone's own).
        sliding_window: a :class:`SlidingWindow` (``TEST.SLIDING_WINDOW``) for images larger
            than one window, or None.

    Training input: mapper dicts with ``image`` (uint8 3×h×w) and ``sem_seg`` (int64 h×w; values
    0..K-1 classes, K background-not-a-class, ``ignore_value`` ignored); sigmoid losses also use
    ``label_masks`` (bool K×h×w) when present. Returns ``{loss_name: scalar}``.
    Inference returns ``[{"sem_seg": K×height×width}]`` at each dict's original ``height``/``width``:
    softmax probabilities of the K classes (sigmoid for "bce" loss types). Images larger than the
    sliding window are scored window by window from their uint8 pixels (blended overlaps).
    """

    @configurable
    def __init__(self, *, backbone: Backbone, sem_seg_head: nn.Module, num_classes: int,
                 pixel_mean: Sequence[float], pixel_std: Sequence[float], ignore_value: int = 255,
                 loss_type: str = "ce+dice", loss_weight: float = 1.0, dice_weight: float = 1.0,
                 focal_gamma: float = 2.0, size_divisibility: int = 32,
                 sliding_window: Optional[SlidingWindow] = None):
        super().__init__()
        if loss_type not in PER_PIXEL_LOSSES:
            raise ValueError(f"MODEL.SEM_SEG_HEAD.LOSS_TYPE='{loss_type}' is unknown; expected one of "
                             f"{sorted(PER_PIXEL_LOSSES)}")
        if len(pixel_mean) != len(pixel_std):
            raise ValueError(f"MODEL.PIXEL_MEAN {list(pixel_mean)} and MODEL.PIXEL_STD {list(pixel_std)} "
                             f"must have the same length")
        self.backbone = backbone
        self.sem_seg_head = sem_seg_head
        self.num_classes = num_classes
        self.ignore_value = ignore_value
        self.loss_type = loss_type
        self.loss_weight = loss_weight
        self.dice_weight = dice_weight
        self.focal_gamma = focal_gamma
        self.sigmoid = loss_type in SIGMOID_LOSS_TYPES
        self.size_divisibility = max(int(size_divisibility), int(backbone.size_divisibility or 0))
        self.sliding_window = sliding_window
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean, dtype=torch.float32).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std, dtype=torch.float32).view(-1, 1, 1), False)

    @classmethod
    def from_config(cls, cfg):
        backbone = build_backbone(cfg)
        pixel_mean, pixel_std = resolve_pixel_normalization(cfg, backbone)
        head = build_sem_seg_head(cfg, backbone.output_shape())
        h = cfg.MODEL.SEM_SEG_HEAD
        return {
            "backbone": backbone,
            "sem_seg_head": head,
            "num_classes": h.NUM_CLASSES,
            "pixel_mean": pixel_mean,
            "pixel_std": pixel_std,
            "ignore_value": h.IGNORE_VALUE,
            "loss_type": h.LOSS_TYPE,
            "loss_weight": h.LOSS_WEIGHT,
            "dice_weight": h.DICE_WEIGHT,
            "focal_gamma": h.FOCAL_GAMMA,
            "size_divisibility": h.SIZE_DIVISIBILITY,
            "sliding_window": SlidingWindow.from_config(cfg),
        }

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def preprocess_image(self, batched_inputs: List[dict]) -> ImageList:
        """Normalise and pad the ``image`` of each dict into a ``B×3×H×W`` ImageList on the model's device."""
        images = [(x["image"].to(self.device, non_blocking=True).float() - self.pixel_mean) / self.pixel_std
                  for x in batched_inputs]
        return ImageList.from_tensors(images, self.size_divisibility)

    def _logits(self, images: ImageList) -> torch.Tensor:
        """``B×(K+1)×Hp×Wp`` logits at the padded input resolution."""
        logits = self.sem_seg_head(self.backbone(images.tensor))
        return F.interpolate(logits, size=images.tensor.shape[-2:], mode="bilinear", align_corners=False)

    def forward(self, batched_inputs: List[dict]):
        if not self.training:
            return self.inference(batched_inputs)
        images = self.preprocess_image(batched_inputs)
        return self.losses(self._logits(images), batched_inputs, images)

    def losses(self, logits: torch.Tensor, batched_inputs: List[dict], images: ImageList) -> Dict[str, torch.Tensor]:
        if any("sem_seg" not in x for x in batched_inputs):
            raise KeyError("PerPixelSegmentor training needs 'sem_seg' (int64 h×w label map) in every input dict; "
                           "use a semantic / multi-label dataset mapper")
        for x in batched_inputs:
            if tuple(x["sem_seg"].shape[-2:]) != tuple(x["image"].shape[-2:]):
                raise ValueError(f"'sem_seg' of {x.get('file_name', '?')} has size {tuple(x['sem_seg'].shape)}, "
                                 f"the image {tuple(x['image'].shape[-2:])}")
        targets = ImageList.from_tensors([x["sem_seg"].to(self.device, non_blocking=True).long()
                                          for x in batched_inputs],
                                         self.size_divisibility, pad_value=self.ignore_value).tensor
        label_masks = None
        if self.sigmoid and all("label_masks" in x for x in batched_inputs):
            label_masks = ImageList.from_tensors([x["label_masks"].to(self.device).float() for x in batched_inputs],
                                                 self.size_divisibility, pad_value=0.0).tensor
        weights = {"main": self.loss_weight, "dice": self.loss_weight * self.dice_weight}
        return {
            name: fn(logits, targets, self.ignore_value, label_masks, self.focal_gamma) * weights[which]
            for name, (fn, which) in PER_PIXEL_LOSSES[self.loss_type].items()
        }

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        """``B×(K+1)×H×W`` logits -> ``B×K×H×W`` class probabilities."""
        if self.sigmoid:
            return logits[:, : self.num_classes].sigmoid()
        return logits.softmax(dim=1)[:, : self.num_classes]

    def _window_scores(self, crops: List[torch.Tensor]) -> List[torch.Tensor]:
        """Probabilities ``K×h×w`` of uint8 ``3×h×w`` window crops (one batch)."""
        images = self.preprocess_image([{"image": c} for c in crops])
        scores = self.scores(self._logits(images))
        return [s[:, : h, : w] for s, (h, w) in zip(scores, images.image_sizes)]

    @torch.no_grad()
    def inference(self, batched_inputs: List[dict]) -> List[dict]:
        """``[{"sem_seg": K×height×width}]``; windowed images never go to the device whole."""
        results: List[dict] = [{} for _ in batched_inputs]
        windowed = [self.sliding_window is not None and self.sliding_window.applies_to(tuple(x["image"].shape[-2:]))
                    for x in batched_inputs]
        batched = [i for i, w in enumerate(windowed) if not w]
        if batched:
            images = self.preprocess_image([batched_inputs[i] for i in batched])
            scores = self.scores(self._logits(images))
            for score, i, size in zip(scores, batched, images.image_sizes):
                x = batched_inputs[i]
                results[i]["sem_seg"] = sem_seg_postprocess(score, size, x.get("height", size[0]),
                                                            x.get("width", size[1]))
        for i, x in enumerate(batched_inputs):
            if windowed[i]:
                size = tuple(x["image"].shape[-2:])
                score = self.sliding_window(x["image"], self._window_scores)
                results[i]["sem_seg"] = sem_seg_postprocess(score, size, x.get("height", size[0]),
                                                            x.get("width", size[1]))
        return results
