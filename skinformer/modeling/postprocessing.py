from typing import List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from skinformer.structures.label_space import LabelSpace

__all__ = ["sem_seg_postprocess", "MaskPostProcessor"]


def sem_seg_postprocess(result: torch.Tensor, img_size, output_height: int, output_width: int) -> torch.Tensor:
    """Crop padded ``K×H_pad×W_pad`` scores to the network input size ``img_size`` (h, w) and
    resize them bilinearly to the original ``output_height × output_width``."""
    result = result[:, : img_size[0], : img_size[1]].expand(1, -1, -1, -1)
    result = F.interpolate(result, size=(output_height, output_width), mode="bilinear", align_corners=False)[0]
    return result


# ---------------------------------------------------------------------------------------------
# Mask post-processing (MODEL.POSTPROCESS): morphology / holes / components on decided masks
# ---------------------------------------------------------------------------------------------
class MaskPostProcessor:
    """Clean the masks a ``sem_seg`` score map decides, per class, and write the result back into
    the scores so that every consumer (evaluators, visualiser, ``tools/predict.py``) sees the same
    cleaned masks through the usual decision rule.

    Per class ``c`` (in this order): morphological opening with a ``k×k`` square
    (``opening_kernels[c]``; erosion then dilation, removes specks), closing (``closing_kernels[c]``;
    fills thin gaps), hole filling, removal of connected components smaller than ``min_area``
    pixels, keeping only the largest component. A kernel size <= 1 skips that step.

    Decision rules (``docs/ARCHITECTURE.md``, model contract): ``"multi_label"`` each class ``score > threshold``;
    ``"threshold"`` (no background class) ``argmax_c`` where ``max_c > threshold``; ``"argmax"``
    (a background class at ``background_index``, which is not post-processed).

    Scores are changed only where the decision changed: a removed pixel gets score 0 for its class
    (and 1 for the background class under "argmax"); an added pixel gets 1 for its class and, under
    the exclusive rules, 0 for the other classes. ``scores``: float ``K×H×W`` -> same shape/device.
    """

    def __init__(self, *, decision: str, num_classes: int, opening_kernels: Sequence[int] = (),
                 closing_kernels: Sequence[int] = (), fill_holes: bool = False, keep_largest: bool = False,
                 min_area: int = 0, threshold: float = 0.5, background_index: int = 0):
        if decision not in ("multi_label", "threshold", "argmax"):
            raise ValueError(f"MaskPostProcessor: decision '{decision}' unknown; expected multi_label/threshold/argmax")
        self.decision = decision
        self.num_classes = int(num_classes)
        self.opening = self._per_class(opening_kernels, "OPENING_KERNELS")
        self.closing = self._per_class(closing_kernels, "CLOSING_KERNELS")
        self.fill_holes = bool(fill_holes)
        self.keep_largest = bool(keep_largest)
        self.min_area = int(min_area)
        self.threshold = float(threshold)
        self.background_index = int(background_index)
        # the decision rule itself is the label space's; channel names do not matter here
        self._space = LabelSpace(classes=tuple(str(c) for c in range(self.num_classes)),
                                 background_is_class=decision == "argmax", background_index=self.background_index,
                                 multi_label=decision == "multi_label", threshold=self.threshold)

    def _per_class(self, kernels: Sequence[int], key: str) -> List[int]:
        kernels = [int(k) for k in kernels]
        if len(kernels) == 1:
            kernels = kernels * self.num_classes
        if kernels and len(kernels) != self.num_classes:
            raise ValueError(f"MODEL.POSTPROCESS.{key} {kernels} needs one kernel size per class "
                             f"({self.num_classes}) or a single value for all")
        return kernels or [0] * self.num_classes

    @property
    def active(self) -> bool:
        """True if any cleaning step is enabled."""
        return (any(k > 1 for k in self.opening + self.closing) or self.fill_holes or self.keep_largest
                or self.min_area > 0)

    @classmethod
    def from_config(cls, cfg) -> Optional["MaskPostProcessor"]:
        """``None`` when ``MODEL.POSTPROCESS.ENABLED`` is False. The decision rule follows the
        test (else training) datasets' metadata."""
        node = cfg.MODEL.POSTPROCESS
        if not node.ENABLED:
            return None
        if list(cfg.DATASETS.TEST) or list(cfg.DATASETS.TRAIN):
            space = LabelSpace.from_config(cfg)
            decision, background_index = space.decision, space.background_index
        else:
            decision, background_index = "threshold", 0
        if cfg.INPUT.DATASET_MAPPER_NAME == "MultiLabelMapper":
            decision = "multi_label"
        return cls(decision=decision, background_index=background_index, num_classes=cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES,
                   opening_kernels=node.OPENING_KERNELS, closing_kernels=node.CLOSING_KERNELS,
                   fill_holes=node.FILL_HOLES, keep_largest=node.KEEP_LARGEST, min_area=node.MIN_AREA,
                   threshold=node.THRESHOLD if node.THRESHOLD >= 0 else cfg.TEST.THRESHOLD)

    def decide(self, scores: torch.Tensor) -> torch.Tensor:
        """Bool ``K×H×W`` masks of ``scores`` under the decision rule."""
        return self._space.masks_from_scores(scores)

    def clean_mask(self, mask: np.ndarray, c: int) -> np.ndarray:
        """One class's bool ``H×W`` mask -> cleaned bool ``H×W``."""
        import cv2
        from scipy import ndimage

        m = mask.astype(np.uint8)
        for op, k in ((cv2.MORPH_OPEN, self.opening[c]), (cv2.MORPH_CLOSE, self.closing[c])):
            if k > 1:
                m = cv2.morphologyEx(m, op, np.ones((k, k), np.uint8))
        if self.fill_holes:
            m = ndimage.binary_fill_holes(m).astype(np.uint8)
        if self.min_area > 0 or self.keep_largest:
            n, comp, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
            areas = stats[1:, cv2.CC_STAT_AREA]
            keep = areas >= self.min_area
            if self.keep_largest and keep.any():
                keep = np.zeros_like(keep)
                keep[int(np.argmax(areas))] = True
            m = np.isin(comp, 1 + np.flatnonzero(keep)).astype(np.uint8)
        return m.astype(bool)

    def __call__(self, scores: torch.Tensor) -> torch.Tensor:
        if not self.active:
            return scores
        if scores.dim() != 3 or scores.shape[0] != self.num_classes:
            raise ValueError(f"MaskPostProcessor expects K×H×W scores with K = {self.num_classes}, got "
                             f"{tuple(scores.shape)}")
        decided = self.decide(scores)
        dec_np = decided.cpu().numpy()
        cleaned = np.stack([
            dec_np[c] if (self.decision == "argmax" and c == self.background_index) else self.clean_mask(dec_np[c], c)
            for c in range(self.num_classes)
        ])
        cleaned = torch.from_numpy(cleaned).to(scores.device)
        if self.decision != "multi_label":
            # an exclusive rule gives a pixel one class: where two cleaned masks claim it, the
            # originally decided class wins
            claimed = cleaned.sum(0) > 1
            cleaned = torch.where(claimed.unsqueeze(0), decided & cleaned, cleaned)
        removed, added = decided & ~cleaned, cleaned & ~decided
        out = scores.clone()
        out[removed] = 0.0
        if self.decision != "multi_label":
            added_any = added.any(0, keepdim=True)
            out = torch.where(added_any & ~added, torch.zeros_like(out), out)
        out[added] = 1.0
        if self.decision == "argmax":
            # a pixel no class keeps becomes background
            orphan = (removed.any(0) & ~cleaned.any(0))
            out[self.background_index][orphan] = 1.0
        return out
