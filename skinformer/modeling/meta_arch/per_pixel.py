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
from ..postprocessing import MaskPostProcessor, sem_seg_postprocess
from ..sliding_window import SlidingWindow
from ..sem_seg_heads import build_sem_seg_head
from .build import META_ARCH_REGISTRY

__all__ = ["PerPixelSegmentor", "datasets_are_multi_label"]

logger = logging.getLogger(__name__)


def datasets_are_multi_label(cfg) -> bool:
    """Whether the training (else test) datasets are multi-label (overlapping per-class masks, the
    ``MultiLabelMapper`` of e.g. ``isic2018_task2_*``), read from their metadata ``mapper`` or from
    ``INPUT.DATASET_MAPPER_NAME``. Mixing multi-label and single-label datasets is an error."""
    from skinformer.data.catalog import MetadataCatalog
    from skinformer.structures.label_space import LabelSpace

    if cfg.INPUT.DATASET_MAPPER_NAME:
        return cfg.INPUT.DATASET_MAPPER_NAME == "MultiLabelMapper"
    names = list(cfg.DATASETS.TRAIN) or list(cfg.DATASETS.TEST)
    kinds = {n: LabelSpace.from_metadata(MetadataCatalog.get(n)).multi_label for n in names}
    if len(set(kinds.values())) > 1:
        raise ValueError(f"DATASETS {names} mix multi-label and single-label datasets ({kinds}); a per-pixel "
                         f"model is either one sigmoid per class or a label map")
    return any(kinds.values())


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
        postprocessor: optional :class:`MaskPostProcessor` (``MODEL.POSTPROCESS``) applied to each
            output ``sem_seg`` at the original resolution.
        sliding_window: a :class:`SlidingWindow` (``TEST.SLIDING_WINDOW``) for images larger
            than one window, or None: those are scored window by window from their uint8 pixels
            (blended overlaps) and never normalised whole on the device.

    Training input: mapper dicts with ``image`` (uint8 3×h×w) and ``sem_seg`` (int64 h×w; values
    0..K-1 classes, K background-not-a-class, ``ignore_value`` ignored); sigmoid losses also use
    ``label_masks`` (bool K×h×w) when present. Returns ``{loss_name: scalar}``.
    Inference returns ``[{"sem_seg": K×height×width}]`` at each dict's original ``height``/``width``:
    softmax probabilities of the K classes (sigmoids when the loss scores sigmoids).

    Multi-label data (``multi_label``, set from the datasets' metadata by :func:`datasets_are_multi_label`):
    training reads ``label_masks`` (bool K×h×w, overlapping) instead of ``sem_seg`` and hands them
    to the loss as per-class masks, which every registered loss scores with one sigmoid per class
    (CE/BCE, focal, Dice... per attribute; padded pixels are invalid). Inference emits
    ``sigmoid(logits[:K])``, thresholded per class by the ``isic_task2`` evaluator. The "no class"
    logit is then unused.
    """

    @configurable
    def __init__(self, *, backbone: Backbone, sem_seg_head: nn.Module, num_classes: int,
                 pixel_mean: Sequence[float], pixel_std: Sequence[float], ignore_value: int = 255,
                 loss: Optional[nn.Module] = None, size_divisibility: int = 32, multi_label: bool = False,
                 postprocessor: Optional[MaskPostProcessor] = None,
                 sliding_window: Optional[SlidingWindow] = None):
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
        self.multi_label = bool(multi_label)
        self.postprocessor = postprocessor
        self.sigmoid = self.multi_label or loss.activation == "sigmoid"
        self.size_divisibility = max(int(size_divisibility), int(backbone.size_divisibility or 0))
        self.sliding_window = sliding_window
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean, dtype=torch.float32).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std, dtype=torch.float32).view(-1, 1, 1), False)

    @classmethod
    def from_config(cls, cfg):
        """Keyword arguments from ``cfg``: backbone, head, loss, normalisation and post-processing."""
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
            "multi_label": datasets_are_multi_label(cfg),
            "postprocessor": MaskPostProcessor.from_config(cfg),
            "sliding_window": SlidingWindow.from_config(cfg),
        }

    @property
    def device(self) -> torch.device:
        """Device of the model (that of ``pixel_mean``)."""
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
        """Training: the loss dict of :meth:`losses`; eval: the outputs of :meth:`inference`."""
        if not self.training:
            return self.inference(batched_inputs)
        images = self.preprocess_image(batched_inputs)
        return self.losses(self._logits(images), batched_inputs, images)

    def losses(self, logits: torch.Tensor, batched_inputs: List[dict], images: ImageList) -> Dict[str, torch.Tensor]:
        """Loss dict of ``B×C×H×W`` logits against the padded ``sem_seg`` label maps (or the per-class
        ``label_masks`` with sigmoid, or the multi-label targets)."""
        if self.multi_label:
            return self._multi_label_losses(logits, batched_inputs, images)
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

    def _multi_label_losses(self, logits: torch.Tensor, batched_inputs: List[dict],
                            images: ImageList) -> Dict[str, torch.Tensor]:
        for x in batched_inputs:
            lm = x.get("label_masks")
            if lm is None:
                raise KeyError(f"PerPixelSegmentor on multi-label data needs 'label_masks' (bool K×h×w) in every input "
                               f"dict ({x.get('file_name', '?')} has none); use the MultiLabelMapper")
            if lm.dim() != 3 or lm.shape[0] != self.num_classes or tuple(lm.shape[-2:]) != tuple(x["image"].shape[-2:]):
                raise ValueError(f"'label_masks' of {x.get('file_name', '?')} has shape {tuple(lm.shape)}; expected "
                                 f"({self.num_classes}, {x['image'].shape[-2]}, {x['image'].shape[-1]}) "
                                 f"(MODEL.SEM_SEG_HEAD.NUM_CLASSES × image size)")
        label_masks = ImageList.from_tensors([x["label_masks"].to(self.device).float() for x in batched_inputs],
                                             self.size_divisibility, pad_value=0.0).tensor
        # padding is not "attribute absent": leave it out of every loss
        valid = torch.zeros(label_masks.shape[:1] + label_masks.shape[2:], dtype=torch.bool, device=self.device)
        for i, (h, w) in enumerate(images.image_sizes):
            valid[i, :h, :w] = True
        return self.loss(logits, label_masks, valid=valid)

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
        scores: List = [None] * len(batched_inputs)
        windowed = [self.sliding_window is not None and self.sliding_window.applies_to(tuple(x["image"].shape[-2:]))
                    for x in batched_inputs]
        batched = [i for i, w in enumerate(windowed) if not w]
        if batched:
            images = self.preprocess_image([batched_inputs[i] for i in batched])
            for score, i, size in zip(self.scores(self._logits(images)), batched, images.image_sizes):
                scores[i] = (score, size)
        for i, x in enumerate(batched_inputs):
            if windowed[i]:
                scores[i] = (self.sliding_window(x["image"], self._window_scores), tuple(x["image"].shape[-2:]))
        results = []
        for x, (score, size) in zip(batched_inputs, scores):
            score = sem_seg_postprocess(score, size, x.get("height", size[0]), x.get("width", size[1]))
            if self.postprocessor is not None:
                score = self.postprocessor(score)
            results.append({"sem_seg": score})
        return results
