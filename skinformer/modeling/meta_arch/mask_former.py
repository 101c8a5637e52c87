"""Mask-classification meta-architectures: ``MaskFormer`` (Mask2Former) and ``SiMaskFormer``.

backbone → pixel decoder (``mask_features`` + multi-scale features) → transformer decoder
(per-query class logits and mask logits) → :class:`SetCriterion` in training, or semantic /
multi-label / instance post-processing at inference. ``MaskFormer`` reads ``MODEL.MASK_FORMER``,
``SiMaskFormer`` the same keys under ``MODEL.SIMASKFORMER`` plus its own (two-stage, denoising,
UOME proposal loss). Everything runs on the device of the model's parameters
(``MODEL.DEVICE``).

Inference outputs at the original resolution (``height``, ``width`` of the input dict):

* semantic: ``sem_seg[c] = Σ_q p_q(c)·σ(mask_q)`` with ``p`` = softmax without the no-object
  column (CE mode) or sigmoid (focal mode). With one class the map is clamped to [0, 1] so it
  reads as a probability (the original implementation leaves it unbounded and min–max normalises per image in its
  evaluator; we do not).
* multi-label (``TEST.MULTILABEL_ON``): ``sem_seg[c] = max_q p_q(c)·σ(mask_q)``, in [0, 1], each
  class thresholded on its own at 0.5 by the evaluator.
* instance: the top-k (query, class) pairs by class probability; score = class probability ×
  mean mask probability inside the binary mask (logit > 0), sorted by it; boxes from
  ``pred_boxes`` when the decoder predicts them, else the tight boxes of the masks.
* sliding window (``TEST.SLIDING_WINDOW``, semantic / multi-label only): images with a side
  larger than ``SIZE`` are processed in ``SIZE×SIZE`` windows every ``STRIDE`` pixels; the
  windows' score maps are blended where they overlap (:class:`~..sliding_window.SlidingWindow`).
"""
import logging
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from skinformer.config import configurable
from skinformer.structures import Boxes, ImageList, Instances, box_cxcywh_to_xyxy, box_xyxy_to_cxcywh, masks_to_boxes

from ..backbone import Backbone, build_backbone, resolve_pixel_normalization
from ..criterion import MASK_SAMPLINGS, SetCriterion, build_weight_dict
from ..losses import resolve_class_weights
from ..matcher import HungarianMatcher
from ..pixel_auxiliary_loss import PixelAuxiliaryLoss
from ..pixel_decoder import build_pixel_decoder
from ..postprocessing import MaskPostProcessor, sem_seg_postprocess
from ..sliding_window import SlidingWindow
from ..transformer_decoder import build_transformer_decoder
from .build import META_ARCH_REGISTRY

__all__ = ["MaskFormer", "SiMaskFormer"]

logger = logging.getLogger(__name__)

# queries whose masks are resized and combined at a time at inference
_MASK_CHUNK = 16


@META_ARCH_REGISTRY.register()
class MaskFormer(nn.Module):
    """Mask-classification model (Mask2Former). See the module docstring.

    Args:
        backbone, pixel_decoder, transformer_decoder, criterion: the parts.
        num_classes: K.
        class_loss: "ce" or "focal" (how class logits are turned into probabilities).
        size_divisibility: the padded batch is a multiple of this (and of the backbone's).
        pixel_mean, pixel_std: RGB normalisation (0–255 units).
        semantic_on, multilabel_on, instance_on: inference outputs.
        sem_seg_postprocess_before_inference: resize the mask logits to the original size
            before combining them.
        test_topk_per_image: instances kept per image.
        focus_on_box: instance score = class probability only.
        sliding_window: a :class:`SlidingWindow`, or None.
        pixel_aux_loss: optional training-only :class:`PixelAuxiliaryLoss` on the mask features.
    """

    # The config node this architecture reads (MODEL.<CONFIG_NODE>).
    CONFIG_NODE = "MASK_FORMER"

    @configurable
    def __init__(self, *, backbone: Backbone, pixel_decoder: nn.Module, transformer_decoder: nn.Module,
                 criterion: SetCriterion, num_classes: int, class_loss: str = "ce", size_divisibility: int = 32,
                 pixel_mean: Sequence[float], pixel_std: Sequence[float], semantic_on: bool = True,
                 multilabel_on: bool = False, instance_on: bool = False,
                 sem_seg_postprocess_before_inference: bool = False, test_topk_per_image: int = 100,
                 focus_on_box: bool = False, sliding_window: Optional[SlidingWindow] = None,
                 postprocessor: Optional[MaskPostProcessor] = None,
                 pixel_aux_loss: Optional[PixelAuxiliaryLoss] = None):
        super().__init__()
        if class_loss not in ("ce", "focal"):
            raise ValueError(f"{type(self).__name__}: class_loss must be 'ce' or 'focal', got {class_loss!r}")
        self.backbone = backbone
        self.pixel_decoder = pixel_decoder
        self.transformer_decoder = transformer_decoder
        self.criterion = criterion
        self.num_classes = num_classes
        self.class_loss = class_loss
        self.size_divisibility = max(size_divisibility, backbone.size_divisibility)
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean, dtype=torch.float32).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std, dtype=torch.float32).view(-1, 1, 1), False)
        self.semantic_on = semantic_on
        self.multilabel_on = multilabel_on
        self.instance_on = instance_on
        self.sem_seg_postprocess_before_inference = sem_seg_postprocess_before_inference
        self.test_topk_per_image = test_topk_per_image
        self.focus_on_box = focus_on_box
        self.sliding_window = sliding_window
        # MODEL.POSTPROCESS: cleans every emitted ``sem_seg`` (see MaskPostProcessor)
        self.postprocessor = postprocessor
        self.pixel_aux_loss = pixel_aux_loss
        self._dropped_losses = set()

    # ------------------------------------------------------------------------------------------
    # construction from a config
    # ------------------------------------------------------------------------------------------
    @classmethod
    def config_node(cls, cfg):
        """The config node this architecture reads, ``cfg.MODEL[CONFIG_NODE]``."""
        return cfg.MODEL[cls.CONFIG_NODE]

    @classmethod
    def family_options(cls, node) -> Dict:
        """What the criterion must expect from this family's decoder: number of aux prediction
        sets, two-stage outputs, denoising, proposal-loss weight."""
        return {"num_aux": node.DEC_LAYERS - 1, "two_stage": False, "dn": None, "proposal_weight": None}

    @classmethod
    def build_criterion(cls, cfg) -> SetCriterion:
        """Build the :class:`SetCriterion` (with its :class:`HungarianMatcher` and loss weights) from
        ``cfg``; raises ``ValueError`` for an unknown ``MASK_LOSS_SAMPLING``."""
        node = cls.config_node(cfg)
        opts = cls.family_options(node)
        class_loss = "ce" if node.SEMANTIC_CE_LOSS else "focal"
        box = bool(node.BOX_LOSS)
        if node.MASK_LOSS_SAMPLING not in MASK_SAMPLINGS:
            raise ValueError(f"MODEL.{cls.CONFIG_NODE}.MASK_LOSS_SAMPLING is {node.MASK_LOSS_SAMPLING!r}; "
                             f"expected one of {MASK_SAMPLINGS}")
        matcher = HungarianMatcher(
            cost_class=node.COST_CLASS_WEIGHT, cost_mask=node.COST_MASK_WEIGHT, cost_dice=node.COST_DICE_WEIGHT,
            cost_box=node.COST_BOX_WEIGHT if box else 0.0, cost_giou=node.COST_GIOU_WEIGHT if box else 0.0,
            num_points=node.TRAIN_NUM_POINTS, class_loss=class_loss, class_cost_type=node.CLASS_COST_TYPE,
            focal_alpha=node.FOCAL_ALPHA, focal_gamma=node.FOCAL_GAMMA, mask_sampling=node.MASK_LOSS_SAMPLING,
        )
        num_aux = opts["num_aux"] if node.DEEP_SUPERVISION else 0
        weight_dict = build_weight_dict(
            node.CLASS_WEIGHT, node.MASK_WEIGHT, node.DICE_WEIGHT, node.BOX_WEIGHT, node.GIOU_WEIGHT,
            box_loss=box, num_aux=num_aux, two_stage=opts["two_stage"], dn=opts["dn"] is not None,
            proposal_weight=opts["proposal_weight"],
        )
        losses = ["labels", "masks"] + (["boxes"] if box else [])
        return SetCriterion(
            cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES, matcher, weight_dict, eos_coef=node.NO_OBJECT_WEIGHT, losses=losses,
            num_points=node.TRAIN_NUM_POINTS, oversample_ratio=node.OVERSAMPLE_RATIO,
            importance_sample_ratio=node.IMPORTANCE_SAMPLE_RATIO, class_loss=class_loss,
            focal_alpha=node.FOCAL_ALPHA, focal_gamma=node.FOCAL_GAMMA, deep_supervision=node.DEEP_SUPERVISION,
            single_matching=node.SML, dn_enabled=opts["dn"] is not None,
            dn_losses=opts["dn"], proposal_empty_gt=node.get("PROPOSAL_EMPTY_GT", "exclude"),
            class_weights=resolve_class_weights(cfg), mask_sampling=node.MASK_LOSS_SAMPLING,
        )

    @classmethod
    def from_config(cls, cfg):
        """Keyword arguments from ``cfg``: backbone, pixel decoder, transformer decoder, criterion,
        normalisation, test options and post-processing."""
        node = cls.config_node(cfg)
        if cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES < 1:
            raise ValueError(f"MODEL.SEM_SEG_HEAD.NUM_CLASSES must be >= 1, got {cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES}")
        backbone = build_backbone(cfg)
        pixel_mean, pixel_std = resolve_pixel_normalization(cfg, backbone)
        pixel_decoder = build_pixel_decoder(cfg, backbone.output_shape())
        transformer_decoder = build_transformer_decoder(
            cfg, cfg.MODEL.SEM_SEG_HEAD.CONVS_DIM, mask_classification=True, name=node.TRANSFORMER_DECODER_NAME,
            config_key=f"MODEL.{cls.CONFIG_NODE}.TRANSFORMER_DECODER_NAME",
        )
        return {
            "backbone": backbone,
            "pixel_decoder": pixel_decoder,
            "transformer_decoder": transformer_decoder,
            "criterion": cls.build_criterion(cfg),
            "num_classes": cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES,
            "class_loss": "ce" if node.SEMANTIC_CE_LOSS else "focal",
            "size_divisibility": node.SIZE_DIVISIBILITY,
            "pixel_mean": pixel_mean,
            "pixel_std": pixel_std,
            "semantic_on": node.TEST.SEMANTIC_ON,
            "multilabel_on": node.TEST.MULTILABEL_ON,
            "instance_on": node.TEST.INSTANCE_ON,
            "sem_seg_postprocess_before_inference": node.TEST.SEM_SEG_POSTPROCESSING_BEFORE_INFERENCE,
            "test_topk_per_image": cfg.TEST.DETECTIONS_PER_IMAGE,
            "focus_on_box": node.TEST.FOCUS_ON_BOX,
            "sliding_window": SlidingWindow.from_config(cfg),
            "postprocessor": MaskPostProcessor.from_config(cfg),
            "pixel_aux_loss": PixelAuxiliaryLoss(
                cfg.MODEL.SEM_SEG_HEAD.MASK_DIM, cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES, node.PIXEL_AUX_WEIGHT
            ) if node.PIXEL_AUX_WEIGHT > 0 else None,
        }

    # ------------------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        """Device of the model (that of ``pixel_mean``)."""
        return self.pixel_mean.device

    def preprocess_image(self, batched_inputs: List[Dict]) -> ImageList:
        """Normalise ``uint8 3×h×w`` images and pad them into one ``B×3×Hp×Wp`` batch (zeros after
        normalisation, Hp, Wp multiples of ``size_divisibility``)."""
        images = [(x["image"].to(self.device, non_blocking=True).float() - self.pixel_mean) / self.pixel_std
                  for x in batched_inputs]
        return ImageList.from_tensors(images, self.size_divisibility)

    def predict(self, images: torch.Tensor, targets: Optional[List[Dict]] = None) -> Dict:
        """Backbone → pixel decoder → transformer decoder on a normalised padded batch."""
        return self._predict(images, targets)[0]

    def _predict(self, images: torch.Tensor, targets: Optional[List[Dict]] = None) -> Tuple[Dict, torch.Tensor]:
        """:meth:`predict`'s outputs and the ``B×D×H/4×W/4`` mask features."""
        features = self.backbone(images)
        mask_features, multi_scale_features = self.pixel_decoder.forward_features(features)
        return self.transformer_decoder(multi_scale_features, mask_features, targets), mask_features

    def prepare_targets(self, batched_inputs: List[Dict], images: ImageList) -> List[Dict[str, torch.Tensor]]:
        """Per image ``{"labels": int64 N, "masks": float N×Hp×Wp (zero-padded), "boxes": N×4 cxcywh
        normalised by (Wp, Hp)}`` from the mapper's ``instances``."""
        h_pad, w_pad = images.tensor.shape[-2:]
        scale = torch.tensor([w_pad, h_pad, w_pad, h_pad], dtype=torch.float32, device=self.device)
        targets = []
        for x in batched_inputs:
            if "instances" not in x:
                raise ValueError(
                    f"{type(self).__name__} needs 'instances' in the training dicts (file "
                    f"{x.get('file_name', '?')}); use a mapper that builds them (SemanticMapper / InstanceMapper)"
                )
            inst = x["instances"].to(self.device)
            masks = inst.gt_masks
            masks = masks.tensor if hasattr(masks, "tensor") else masks
            labels = inst.gt_classes.to(torch.int64)
            if labels.numel() and (labels.min() < 0 or labels.max() >= self.num_classes):
                raise ValueError(
                    f"{x.get('file_name', '?')}: ground-truth class ids {sorted(set(labels.tolist()))} outside "
                    f"[0, {self.num_classes}) (MODEL.SEM_SEG_HEAD.NUM_CLASSES = {self.num_classes})"
                )
            h, w = masks.shape[-2:]
            padded = torch.zeros((masks.shape[0], h_pad, w_pad), dtype=torch.float32, device=self.device)
            padded[:, :h, :w] = masks.to(torch.float32)
            if inst.has("gt_boxes"):
                boxes = inst.gt_boxes.tensor if hasattr(inst.gt_boxes, "tensor") else inst.gt_boxes
            else:
                boxes = masks_to_boxes(masks.bool())
            boxes = box_xyxy_to_cxcywh(boxes.to(self.device, torch.float32)) / scale
            targets.append({"labels": labels, "masks": padded, "boxes": boxes})
        return targets

    def forward(self, batched_inputs: List[Dict]):
        """
        Args:
            batched_inputs: mapper dicts (``"image"`` uint8 3×h×w, ``"height"``, ``"width"``,
                ``"instances"`` in training).
        Returns:
            training: dict of weighted scalar losses; eval: per image ``{"sem_seg": K×H×W}``
            and / or ``{"instances": Instances}``.
        """
        if not self.training:
            return self.inference(batched_inputs)
        images = self.preprocess_image(batched_inputs)
        targets = self.prepare_targets(batched_inputs, images)
        outputs, mask_features = self._predict(images.tensor, targets)
        losses = self.weight_losses(self.criterion(outputs, targets))
        if self.pixel_aux_loss is not None:
            losses.update(self.pixel_aux_loss(mask_features, targets))
        return losses

    def weight_losses(self, losses: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Multiply by ``criterion.weight_dict``; drop (and log once) keys without a weight."""
        weights = self.criterion.weight_dict
        out = {}
        for k, v in losses.items():
            if k in weights:
                out[k] = v * weights[k]
            elif k not in self._dropped_losses:
                self._dropped_losses.add(k)
                logger.info(f"{type(self).__name__}: loss '{k}' has no weight in the weight dict; it is not used.")
        return out

    # ------------------------------------------------------------------------------------------
    # inference
    # ------------------------------------------------------------------------------------------
    def class_probs(self, logits: torch.Tensor) -> torch.Tensor:
        """``...×Q×(K+1)`` (CE) or ``...×Q×K`` (focal) logits -> ``...×Q×K`` probabilities."""
        if self.class_loss == "ce":
            return logits.float().softmax(-1)[..., :-1]
        return logits.float().sigmoid()

    def combine_masks(self, probs: torch.Tensor, mask_logits: torch.Tensor,
                      resize: Optional[Callable[[torch.Tensor], torch.Tensor]] = None) -> torch.Tensor:
        """Per-class score maps ``K×H×W`` from ``Q×K`` class probabilities and ``Q×h×w`` mask logits:
        ``Σ_q p_qc·σ(m_q)`` (multi-label: ``max_q``). ``resize`` maps logits ``n×h×w`` to the output
        size ``n×H×W`` before the sigmoid (default: none)."""
        out = None
        # A few queries at a time: full-size maps of every query would be written and read back
        # from memory once more (100 × 512² floats = 100 MB), which costs more than the arithmetic.
        for start in range(0, mask_logits.shape[0], _MASK_CHUNK):
            m = mask_logits[start: start + _MASK_CHUNK].float()
            m = (resize(m) if resize is not None else m.clone()).sigmoid_()
            p = probs[start: start + _MASK_CHUNK]
            if self.multilabel_on:
                part = torch.stack([(p[:, c, None, None] * m).amax(0) for c in range(p.shape[1])])
                out = part if out is None else torch.maximum(out, part)
            else:
                part = torch.einsum("qc,qhw->chw", p, m)
                out = part if out is None else out.add_(part)
        return out.clamp(0.0, 1.0) if self.num_classes == 1 and not self.multilabel_on else out

    def _upsample(self, mask_logits: torch.Tensor, size) -> torch.Tensor:
        """``Q×h×w`` -> ``Q×H×W`` (bilinear)."""
        return F.interpolate(mask_logits[None].float(), size=tuple(size), mode="bilinear", align_corners=False)[0]

    def _dense_scores(self, outputs: Dict, i: int, padded_size, image_size, out_size) -> torch.Tensor:
        """Score map ``K×H×W`` of image ``i`` of a decoder output, cropped to ``image_size`` of the
        padded input and resized to ``out_size``."""
        # float32 even under autocast: the outputs are probabilities
        with torch.autocast(device_type=self.device.type, enabled=False):
            probs = self.class_probs(outputs["pred_logits"][i])
            if self.sem_seg_postprocess_before_inference:
                return self.combine_masks(probs, outputs["pred_masks"][i], lambda m: sem_seg_postprocess(
                    self._upsample(m, padded_size), image_size, *out_size))
            scores = self.combine_masks(probs, outputs["pred_masks"][i], lambda m: self._upsample(m, padded_size))
            return sem_seg_postprocess(scores, image_size, *out_size)

    def _window_scores(self, crops: List[torch.Tensor]) -> List[torch.Tensor]:
        """Score maps ``K×h×w`` of uint8 ``3×h×w`` window crops (one batch)."""
        batch = self.preprocess_image([{"image": c} for c in crops])
        out = self.predict(batch.tensor)
        padded = batch.tensor.shape[-2:]
        return [self._dense_scores(out, i, padded, size, size) for i, size in enumerate(batch.image_sizes)]

    def instance_inference(self, logits: torch.Tensor, mask_logits: torch.Tensor, boxes: Optional[torch.Tensor],
                           padded_size, image_size, out_size) -> Instances:
        """Top-k (query, class) pairs of one image as ``Instances`` at ``out_size``.

        Args:
            logits: ``Q×C``; mask_logits: ``Q×h×w`` (stride 4); boxes: ``Q×4`` cxcywh normalised
            by the padded size, or None.
        """
        with torch.autocast(device_type=self.device.type, enabled=False):
            return self._instance_inference(logits, mask_logits, boxes, padded_size, image_size, out_size)

    def _instance_inference(self, logits, mask_logits, boxes, padded_size, image_size, out_size) -> Instances:
        probs = self.class_probs(logits)
        num_queries, k_cls = probs.shape
        k = min(self.test_topk_per_image, num_queries * k_cls)
        scores, idx = probs.flatten().topk(k, sorted=True)
        labels = idx % k_cls
        query = torch.div(idx, k_cls, rounding_mode="floor")
        masks = sem_seg_postprocess(self._upsample(mask_logits[query], padded_size), image_size, *out_size)
        binary = masks > 0
        if not self.focus_on_box:
            mask_scores = (masks.sigmoid() * binary).flatten(1).sum(1) / (binary.flatten(1).sum(1) + 1e-6)
            scores = scores * mask_scores
        out_h, out_w = out_size
        if boxes is not None:
            hp, wp = padded_size
            xyxy = box_cxcywh_to_xyxy(boxes[query].float()) * boxes.new_tensor([wp, hp, wp, hp]).float()
            # padded-input pixels -> original pixels
            sx, sy = out_w / image_size[1], out_h / image_size[0]
            pred_boxes = Boxes(xyxy * xyxy.new_tensor([sx, sy, sx, sy]))
            pred_boxes.clip((out_h, out_w))
        else:
            pred_boxes = Boxes(masks_to_boxes(binary))
        # highest final score first (the mask score reorders the class-probability ranking)
        order = scores.argsort(descending=True)
        return Instances((out_h, out_w), pred_masks=binary[order], pred_boxes=pred_boxes[order],
                         scores=scores[order], pred_classes=labels[order])

    @torch.no_grad()
    def inference(self, batched_inputs: List[Dict]) -> List[Dict]:
        """Eval outputs of a batch (see the module docstring). Images larger than the sliding
        window are scored window by window from their uint8 pixels, never normalised whole on
        the device; the others (and every image when instances are requested) in one batch."""
        need_dense = self.semantic_on or self.multilabel_on
        windowed = [need_dense and self.sliding_window is not None
                    and self.sliding_window.applies_to(tuple(x["image"].shape[-2:])) for x in batched_inputs]
        results: List[Dict] = [{} for _ in batched_inputs]
        batched = [i for i, w in enumerate(windowed) if not w or self.instance_on]
        if batched:
            images = self.preprocess_image([batched_inputs[i] for i in batched])
            outputs = self.predict(images.tensor)
            padded_size = images.tensor.shape[-2:]
            for j, i in enumerate(batched):
                image_size = images.image_sizes[j]
                x = batched_inputs[i]
                out_size = (int(x.get("height", image_size[0])), int(x.get("width", image_size[1])))
                if need_dense and not windowed[i]:
                    results[i]["sem_seg"] = self._dense_scores(outputs, j, padded_size, image_size, out_size)
                if self.instance_on:
                    boxes = outputs.get("pred_boxes")
                    results[i]["instances"] = self.instance_inference(
                        outputs["pred_logits"][j], outputs["pred_masks"][j], None if boxes is None else boxes[j],
                        padded_size, image_size, out_size,
                    )
        for i, x in enumerate(batched_inputs):
            if windowed[i]:
                image_size = tuple(x["image"].shape[-2:])
                out_size = (int(x.get("height", image_size[0])), int(x.get("width", image_size[1])))
                scores = self.sliding_window(x["image"], self._window_scores)
                results[i]["sem_seg"] = sem_seg_postprocess(scores, image_size, *out_size)
            if self.postprocessor is not None and "sem_seg" in results[i]:
                results[i]["sem_seg"] = self.postprocessor(results[i]["sem_seg"])
        return results


@META_ARCH_REGISTRY.register()
class SiMaskFormer(MaskFormer):
    """SiMaskFormer: :class:`MaskFormer` reading ``MODEL.SIMASKFORMER`` (decoder
    ``SiMaskFormerDecoder`` by default), with the two-stage ``_interm`` losses, the UOME
    ``proposal_loss``, denoising ``_dn`` losses and SML matching (``SML``)."""

    CONFIG_NODE = "SIMASKFORMER"

    @classmethod
    def family_options(cls, node) -> Dict:
        """As :meth:`MaskFormer.family_options`, from ``MODEL.SIMASKFORMER`` (initial prediction,
        two-stage, ``DN`` mode, UOME proposal weight); raises ``ValueError`` for an unknown ``DN``."""
        if node.DN not in ("seg", "standard", "no"):
            raise ValueError(f"MODEL.SIMASKFORMER.DN must be 'seg', 'standard' or 'no', got {node.DN!r}")
        # "standard" denoising supervises labels and boxes only (the original implementation's DN mode of DINO).
        dn = {"seg": ["labels", "masks", "boxes"], "standard": ["labels", "boxes"], "no": None}[node.DN]
        return {
            # the initial prediction is an extra supervised set in front of the DEC_LAYERS layers
            "num_aux": node.DEC_LAYERS if node.INITIAL_PRED else node.DEC_LAYERS - 1,
            "two_stage": bool(node.TWO_STAGE),
            "dn": dn,
            "proposal_weight": node.PROPOSAL_WEIGHT if (node.TWO_STAGE and node.UOME) else None,
        }
