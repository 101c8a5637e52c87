"""Hungarian matching between predicted queries and ground-truth masks (DETR / Mask2Former).

The cost of assigning query q to ground truth t of the same image is

    C[q, t] = w_class·class + w_mask·BCE + w_dice·dice + w_box·L1(box) + w_giou·(-GIoU)

with the mask terms computed on the same random points (uniform in [0, 1]², a new draw per
call) for every prediction and every ground truth of the image (or, with ``mask_sampling="grid"``,
on every cell of the predicted mask grid, the ground truth bilinearly resized to it), and the box terms only when the
predictions have ``"pred_boxes"`` and the targets ``"boxes"``. Everything is computed on the
tensors' device in float32; only the final ``Q×T`` matrices go to the CPU for scipy's
``linear_sum_assignment``.
"""
from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn as nn
from scipy.optimize import linear_sum_assignment

from skinformer.structures import box_cxcywh_to_xyxy, generalized_box_iou

from .mask_losses import batch_dice_cost, batch_sigmoid_ce_cost, focal_class_cost, softmax_class_cost
from .point_sample import point_sample, resize_target_masks

__all__ = ["HungarianMatcher"]

Indices = List[Tuple[torch.Tensor, torch.Tensor]]

# Class-cost functions by name; "focal" also serves CE-mode logits (original-implementation difference D6).
_CLASS_COSTS = {"softmax": softmax_class_cost, "focal": focal_class_cost}


class HungarianMatcher(nn.Module):
    """One-to-one assignment of queries to ground-truth objects, per image.

    Args:
        cost_class, cost_mask, cost_dice, cost_box, cost_giou: weights of the cost terms.
        num_points: mask points sampled per image for the mask costs.
        class_loss: "ce" (logits ``Q×(K+1)``, last = no-object) or "focal" (logits ``Q×K``).
        class_cost_type: in CE mode "softmax" (``-p(class)``, corrected) or "focal" (sigmoid
            focal cost on the CE logits, reproducing the original implementation, difference D6). Focal mode always
            uses the focal cost.
        focal_alpha, focal_gamma: focal cost parameters.
        empty_min_cost: the per-query minimum cost reported for images without ground truth
            (:meth:`forward` with ``return_min_cost_per_query``). The original implementation uses 25; the
            criterion decides whether such images enter the UOME loss at all.
        mask_sampling: "points" (``num_points`` random points) or "grid" (every cell of the
            predicted ``h×w`` masks).
    """

    def __init__(self, cost_class: float = 1.0, cost_mask: float = 1.0, cost_dice: float = 1.0,
                 cost_box: float = 0.0, cost_giou: float = 0.0, num_points: int = 12544,
                 class_loss: str = "ce", class_cost_type: str = "softmax", focal_alpha: float = 0.25,
                 focal_gamma: float = 2.0, empty_min_cost: float = 25.0, mask_sampling: str = "points"):
        super().__init__()
        if mask_sampling not in ("points", "grid"):
            raise ValueError(f"HungarianMatcher: mask_sampling must be 'points' or 'grid', got {mask_sampling!r}")
        self.mask_sampling = mask_sampling
        if class_loss not in ("ce", "focal"):
            raise ValueError(f"HungarianMatcher: class_loss must be 'ce' or 'focal', got {class_loss!r}")
        if class_cost_type not in _CLASS_COSTS:
            raise ValueError(
                f"HungarianMatcher: class_cost_type must be one of {sorted(_CLASS_COSTS)}, got {class_cost_type!r}"
            )
        if max(cost_class, cost_mask, cost_dice, cost_box, cost_giou) <= 0:
            raise ValueError("HungarianMatcher: all cost weights are 0")
        self.cost_class = cost_class
        self.cost_mask = cost_mask
        self.cost_dice = cost_dice
        self.cost_box = cost_box
        self.cost_giou = cost_giou
        self.num_points = num_points
        self.class_loss = class_loss
        self.class_cost_type = "focal" if class_loss == "focal" else class_cost_type
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma
        self.empty_min_cost = empty_min_cost

    # ------------------------------------------------------------------------------------------
    def _class_cost(self, logits: torch.Tensor, tgt_ids: torch.Tensor) -> torch.Tensor:
        if self.class_cost_type == "focal":
            return focal_class_cost(logits, tgt_ids, self.focal_alpha, self.focal_gamma)
        return softmax_class_cost(logits, tgt_ids)

    @torch.no_grad()
    def compute_cost_matrices(self, outputs: Dict[str, torch.Tensor],
                              targets: Sequence[Dict[str, torch.Tensor]]) -> List[torch.Tensor]:
        """Per-image cost matrices.

        Args:
            outputs: ``{"pred_logits": B×Q×C, "pred_masks": B×Q×h×w, "pred_boxes": B×Q×4 (optional)}``.
            targets: per image ``{"labels": T, "masks": T×H×W, "boxes": T×4 cxcywh (optional)}``.
        Returns:
            list of ``Q×T_b`` float32 tensors on the predictions' device (``Q×0`` for an image
            without ground truth).
        """
        logits_all = outputs["pred_logits"]
        masks_all = outputs["pred_masks"]
        boxes_all = outputs.get("pred_boxes")
        device = logits_all.device
        use_boxes = boxes_all is not None and (self.cost_box > 0 or self.cost_giou > 0)
        costs = []
        # Costs are small, numerically sensitive sums: compute them in float32 even under AMP.
        with torch.autocast(device_type=device.type, enabled=False):
            for b, tgt in enumerate(targets):
                num_queries = logits_all.shape[1]
                tgt_ids = tgt["labels"].to(device=device, dtype=torch.long)
                if tgt_ids.numel() == 0:
                    costs.append(torch.zeros((num_queries, 0), device=device))
                    continue
                logits = logits_all[b].float()
                cost = self.cost_class * self._class_cost(logits, tgt_ids)

                if self.cost_mask > 0 or self.cost_dice > 0:
                    if self.mask_sampling == "grid":
                        out_pts = masks_all[b].float().flatten(1)
                        tgt_pts = resize_target_masks(tgt["masks"].to(device), masks_all.shape[-2:]).flatten(1)
                    else:
                        out_mask = masks_all[b].float()[:, None]
                        tgt_mask = tgt["masks"].to(device=device, dtype=torch.float32)[:, None]
                        # The same points for every prediction and every ground truth of the image.
                        coords = torch.rand(1, self.num_points, 2, device=device)
                        tgt_pts = point_sample(tgt_mask, coords.expand(tgt_mask.shape[0], -1, -1)).squeeze(1)
                        out_pts = point_sample(out_mask, coords.expand(out_mask.shape[0], -1, -1)).squeeze(1)
                    if self.cost_mask > 0:
                        cost = cost + self.cost_mask * batch_sigmoid_ce_cost(out_pts, tgt_pts)
                    if self.cost_dice > 0:
                        cost = cost + self.cost_dice * batch_dice_cost(out_pts, tgt_pts)

                if use_boxes and "boxes" in tgt:
                    out_box = boxes_all[b].float()
                    tgt_box = tgt["boxes"].to(device=device, dtype=torch.float32)
                    if self.cost_box > 0:
                        cost = cost + self.cost_box * torch.cdist(out_box, tgt_box, p=1)
                    if self.cost_giou > 0:
                        giou = generalized_box_iou(box_cxcywh_to_xyxy(out_box), box_cxcywh_to_xyxy(tgt_box))
                        cost = cost - self.cost_giou * giou
                costs.append(cost)
        return costs

    @staticmethod
    def assign(costs: Sequence[torch.Tensor]) -> Indices:
        """Solve each ``Q×T`` matrix with scipy's ``linear_sum_assignment`` (on the CPU).

        Returns:
            per image ``(query_idx, target_idx)``, int64 CPU tensors of length ``min(Q, T)``,
            sorted by query index.
        """
        indices = []
        for b, cost in enumerate(costs):
            cost = cost.detach().float().cpu()
            if cost.numel() == 0:
                empty = torch.empty(0, dtype=torch.int64)
                indices.append((empty, empty.clone()))
                continue
            if not torch.isfinite(cost).all():
                raise FloatingPointError(
                    f"HungarianMatcher: the matching cost of image {b} of the batch is not finite "
                    "(NaN/inf in the predictions?)"
                )
            rows, cols = linear_sum_assignment(cost.numpy())
            indices.append((torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)))
        return indices

    @torch.no_grad()
    def forward(self, outputs: Dict[str, torch.Tensor], targets: Sequence[Dict[str, torch.Tensor]],
                return_min_cost_per_query: bool = False):
        """Match predictions to targets.

        Returns:
            ``indices`` (see :meth:`assign`); with ``return_min_cost_per_query`` also a list of
            per-image ``Q`` tensors (predictions' device): each query's minimum cost over the
            image's ground truths, ``empty_min_cost`` everywhere for an image without any.
        """
        costs = self.compute_cost_matrices(outputs, targets)
        indices = self.assign(costs)
        if not return_min_cost_per_query:
            return indices
        min_costs = [
            c.min(dim=1).values if c.shape[1] > 0 else c.new_full((c.shape[0],), self.empty_min_cost)
            for c in costs
        ]
        return indices, min_costs

    def extra_repr(self) -> str:
        """Module summary: cost weights and matching options."""
        return (f"cost_class={self.cost_class}, cost_mask={self.cost_mask}, cost_dice={self.cost_dice}, "
                f"cost_box={self.cost_box}, cost_giou={self.cost_giou}, num_points={self.num_points}, "
                f"class_loss={self.class_loss!r}, class_cost_type={self.class_cost_type!r}, "
                f"mask_sampling={self.mask_sampling!r}")
