"""Per-pixel segmentation baselines: backbone + a registered per-pixel head (FPN, DeepLabV3+,
U-Net, SegFormer) trained with losses from ``LOSS_REGISTRY`` (modeling/losses)."""
import logging
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from skinformer.config import configurable
from skinformer.structures import ImageList

from ..backbone import Backbone, build_backbone, resolve_pixel_normalization
from ..losses import CrossEntropyLoss, DiceLoss, LossCombination, build_loss
from ..postprocessing import sem_seg_postprocess
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
        loss: a :class:`LossCombination` (``build_loss(cfg)``: ``MODEL.LOSS.*`` or the legacy
            ``MODEL.SEM_SEG_HEAD.LOSS_TYPE``); default CE + soft Dice. Its ``activation`` decides
            whether inference emits softmax or sigmoid scores.
        size_divisibility: pad the batch to a multiple of this (raised to the backbone's own).

    Training input: mapper dicts with ``image`` (uint8 3×h×w) and ``sem_seg`` (int64 h×w; values
    0..K-1 classes, K background-not-a-class, ``ignore_value`` ignored); sigmoid losses also use
    ``label_masks`` (bool K×h×w) when present. Returns ``{loss_name: scalar}``.
    Inference returns ``[{"sem_seg": K×height×width}]`` at each dict's original ``height``/``width``:
    softmax probabilities of the K classes (sigmoids when the loss scores sigmoids).
    """

    @configurable
    def __init__(self, *, backbone: Backbone, sem_seg_head: nn.Module, num_classes: int,
                 pixel_mean: Sequence[float], pixel_std: Sequence[float], ignore_value: int = 255,
                 loss: Optional[nn.Module] = None, size_divisibility: int = 32):
        super().__init__()
        if len(pixel_mean) != len(pixel_std):
            raise ValueError(f"MODEL.PIXEL_MEAN {list(pixel_mean)} and MODEL.PIXEL_STD {list(pixel_std)} "
                             f"must have the same length")
        self.backbone = backbone
        self.sem_seg_head = sem_seg_head
        self.num_classes = num_classes
        self.ignore_value = ignore_value
        if loss is None:
            loss = LossCombination({"ce": CrossEntropyLoss(ignore_index=ignore_value),
                                    "dice": DiceLoss(ignore_index=ignore_value)}, {"ce": 1.0, "dice": 1.0}, "softmax")
        self.loss = loss
        self.sigmoid = loss.activation == "sigmoid"
        self.size_divisibility = max(int(size_divisibility), int(backbone.size_divisibility or 0))
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
            "loss": build_loss(cfg),
            "size_divisibility": h.SIZE_DIVISIBILITY,
        }

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def preprocess_image(self, batched_inputs: List[dict]) -> ImageList:
        """Normalise and pad the ``image`` of each dict into a ``B×3×H×W`` ImageList on the model's device."""
        images = [(x["image"].to(self.device, non_blocking=True).float() - self.pixel_mean) / self.pixel_std
                  for x in batched_inputs]
        return ImageList.from_tensors(images, self.size_divisibility)

    def forward(self, batched_inputs: List[dict]):
        images = self.preprocess_image(batched_inputs)
        features = self.backbone(images.tensor)
        logits = self.sem_seg_head(features)
        # Logits at the padded input resolution: B×(K+1)×H×W.
        logits = F.interpolate(logits, size=images.tensor.shape[-2:], mode="bilinear", align_corners=False)
        if self.training:
            return self.losses(logits, batched_inputs, images)
        return self.inference(logits, batched_inputs, images)

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
        if self.sigmoid and all("label_masks" in x for x in batched_inputs):
            # per-class masks (may overlap); the label map only marks ignored / padded pixels
            label_masks = ImageList.from_tensors([x["label_masks"].to(self.device).float() for x in batched_inputs],
                                                 self.size_divisibility, pad_value=0.0).tensor
            return self.loss(logits, label_masks, valid=targets != self.ignore_value)
        return self.loss(logits, targets)

    def inference(self, logits: torch.Tensor, batched_inputs: List[dict], images: ImageList) -> List[dict]:
        if self.sigmoid:
            scores = logits[:, : self.num_classes].sigmoid()
        else:
            scores = logits.softmax(dim=1)[:, : self.num_classes]
        results = []
        for score, x, size in zip(scores, batched_inputs, images.image_sizes):
            height = x.get("height", size[0])
            width = x.get("width", size[1])
            results.append({"sem_seg": sem_seg_postprocess(score, size, height, width)})
        return results
