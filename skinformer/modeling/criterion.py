"""Set-prediction losses of mask-classification models (Mask2Former, MaskDINO, SiMaskFormer).

:class:`SetCriterion` consumes the decoder output dict (see
:mod:`skinformer.modeling.transformer_decoder`) and per-image targets
``{"labels": int64 T, "masks": float T×H×W (padded input size), "boxes": T×4 cxcywh in [0, 1]}``
and returns a dict of *unweighted* scalar losses; the meta-architecture multiplies them by
:func:`build_weight_dict`'s weights and drops keys that have none.

Loss keys (``loss_ce``, ``loss_mask``, ``loss_dice``, ``loss_bbox``, ``loss_giou``) carry a suffix
for the prediction set they supervise: none (final), ``_{i}`` (aux output i, earliest first),
``_interm`` (two-stage proposals), ``_dn`` / ``_dn_{i}`` (denoising queries), plus
``proposal_loss`` (UOME).
"""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from skinformer.structures import box_cxcywh_to_xyxy, generalized_box_iou
from skinformer.utils import comm

from .mask_losses import sigmoid_ce_dice_loss, sigmoid_focal_loss
from .matcher import HungarianMatcher, Indices
from .point_sample import (
    calculate_uncertainty, get_uncertain_point_coords_with_randomness, point_sample, resize_target_masks,
)

__all__ = ["SetCriterion", "build_weight_dict", "LOSS_KEYS", "MASK_SAMPLINGS"]

# Where mask losses and mask matching costs are evaluated (``MODEL.*.MASK_LOSS_SAMPLING``).
MASK_SAMPLINGS = ("points", "grid")


# The scalar keys each loss type produces (also used for the zero placeholders).
LOSS_KEYS = {
    "labels": ("loss_ce",),
    "masks": ("loss_mask", "loss_dice"),
    "boxes": ("loss_bbox", "loss_giou"),
}


def build_weight_dict(class_weight: float, mask_weight: float, dice_weight: float,
                      box_weight: float = 0.0, giou_weight: float = 0.0, *, box_loss: bool = False,
                      num_aux: int = 0, two_stage: bool = False, dn: bool = False,
                      proposal_weight: Optional[float] = None) -> Dict[str, float]:
    """Loss weights in the original implementation's layout.

    base ``loss_ce/mask/dice`` (+ ``loss_bbox/giou`` with ``box_loss``); ``_interm`` copies if
    ``two_stage``; ``_dn`` copies of everything so far if ``dn``; ``_{i}`` copies of everything so
    far for ``i < num_aux`` (deep supervision); ``proposal_loss`` if ``proposal_weight`` is given.
    """
    weights = {"loss_ce": class_weight, "loss_mask": mask_weight, "loss_dice": dice_weight}
    if box_loss:
        weights.update({"loss_bbox": box_weight, "loss_giou": giou_weight})
    if two_stage:
        weights.update({k + "_interm": v for k, v in list(weights.items())})
    if dn:
        weights.update({k + "_dn": v for k, v in list(weights.items())})
    if num_aux > 0:
        base = dict(weights)
        for i in range(num_aux):
            weights.update({k + f"_{i}": v for k, v in base.items()})
    if proposal_weight is not None:
        weights["proposal_loss"] = proposal_weight
    return weights


def _pad_masks(masks: Sequence[torch.Tensor]) -> List[torch.Tensor]:
    """Zero-pad ``T_b×H_b×W_b`` masks to the largest H, W (no-op when they already agree)."""
    h = max(m.shape[-2] for m in masks)
    w = max(m.shape[-1] for m in masks)
    return [m if m.shape[-2:] == (h, w) else F.pad(m, (0, w - m.shape[-1], 0, h - m.shape[-2])) for m in masks]


def _sample_matched_targets(masks: Sequence[torch.Tensor], indices: Indices, coords: torch.Tensor) -> torch.Tensor:
    """Ground truth of every matched pair at its points: ``N×P`` (pairs in ``indices`` order).

    Args:
        masks: per image ``T_b×H×W`` target masks (same H, W).
        indices: per image ``(query_idx, target_idx)``.
        coords: ``N×P×2`` points of the pairs, N = total number of pairs.

    Denoising matches every ground truth G times (one per group): instead of materialising G
    full-resolution copies of each mask (``N×H×W``), the pairs that share a mask read it in one
    ``grid_sample`` over all their points. The sampled values are the same.
    """
    device = coords.device
    labels = []
    start = 0
    for m, (_, tgt_idx) in zip(masks, indices):
        n = len(tgt_idx)
        if n == 0:
            continue
        tgt_idx = tgt_idx.to(m.device)
        pts = coords[start:start + n]
        start += n
        ids, inverse, counts = torch.unique(tgt_idx, return_inverse=True, return_counts=True)
        if len(ids) == n or bool((counts != counts[0]).any()):
            # No mask is shared (or unevenly): one copy per pair, as plain matching does.
            labels.append(point_sample(m[tgt_idx].to(device, torch.float32)[:, None], pts).squeeze(1))
            continue
        # Pairs sorted by their mask; every mask has the same number c of pairs (DN groups).
        order = torch.argsort(inverse, stable=True).to(device)
        grid = pts[order].reshape(len(ids), -1, 2)  # U × (c·P) × 2
        vals = point_sample(m[ids].to(device, torch.float32)[:, None], grid).squeeze(1)
        out = torch.empty_like(vals).view(n, -1)
        out[order] = vals.reshape(n, -1)
        labels.append(out)
    return torch.cat(labels)


class _GridTargets:
    """Per-step cache of the target masks resized to each prediction grid (all prediction sets of
    a step share one or two grid sizes; resizing once per size instead of once per set)."""

    def __init__(self, targets):
        self.targets = targets
        self._by_size = {}

    def get(self, size: Tuple[int, int], device) -> List[torch.Tensor]:
        key = (tuple(size), str(device))
        if key not in self._by_size:
            self._by_size[key] = [resize_target_masks(t["masks"].to(device), size) for t in self.targets]
        return self._by_size[key]


class SetCriterion(nn.Module):
    """Hungarian-matched losses over all prediction sets of a mask-transformer decoder.

    Args:
        num_classes: K (without no-object).
        matcher: :class:`HungarianMatcher`.
        weight_dict: only used to tell which losses are wanted; weighting is the caller's.
        eos_coef: CE weight of the no-object class.
        losses: subset of ``("labels", "masks", "boxes")``. ``boxes`` is skipped for prediction
            sets without ``"pred_boxes"``.
        num_points, oversample_ratio, importance_sample_ratio: PointRend sampling of the mask losses.
        class_loss: "ce" (``B×Q×(K+1)`` logits) or "focal" (``B×Q×K``, sigmoid focal loss summed
            and divided by num_masks).
        focal_alpha, focal_gamma: focal loss parameters.
        deep_supervision: compute the aux-output losses.
        single_matching: SML: one assignment per image on the cost summed over all prediction
            sets (final + aux, matching queries only), reused by every set. False: each set is
            matched on its own.
        dn_enabled: the model uses denoising; emit zero ``_dn`` placeholders in iterations
            without DN queries so the loss keys are the same in every iteration and process.
        dn_losses: loss types for the DN queries (default: ``losses``; DINO-style "standard"
            denoising uses labels and boxes only).
        proposal_empty_gt: UOME targets of images without ground truth: "exclude" (corrected)
            or "original" (all-zero targets after min–max of the fill value, original-implementation
            difference D7).
        class_weights: CE weights of the K classes ("ce" class loss; ``MODEL.LOSS.CLASS_WEIGHTS``);
            the no-object weight stays ``eos_coef``.
        mask_sampling: where the mask losses are evaluated: "points" (PointRend sampling above) or
            "grid" (every cell of the predicted ``h×w`` mask, the targets bilinearly resized to it
            once per step). When ``num_points`` is near ``h·w`` (small inputs) "grid" sees every
            pixel for the cost of none of the sampling.
    """

    _LOSS_FNS = {"labels": "loss_labels", "masks": "loss_masks", "boxes": "loss_boxes"}

    def __init__(self, num_classes: int, matcher: HungarianMatcher, weight_dict: Dict[str, float],
                 eos_coef: float, losses: Sequence[str], num_points: int, oversample_ratio: float,
                 importance_sample_ratio: float, class_loss: str = "ce", focal_alpha: float = 0.25,
                 focal_gamma: float = 2.0, deep_supervision: bool = True, single_matching: bool = False,
                 dn_enabled: bool = False, dn_losses: Optional[Sequence[str]] = None,
                 proposal_empty_gt: str = "exclude", class_weights: Optional[Sequence[float]] = None,
                 mask_sampling: str = "points"):
        super().__init__()
        if mask_sampling not in MASK_SAMPLINGS:
            raise ValueError(f"SetCriterion: mask_sampling must be one of {MASK_SAMPLINGS}, got {mask_sampling!r}")
        self.mask_sampling = mask_sampling
        for loss in list(losses) + list(dn_losses or []):
            if loss not in self._LOSS_FNS:
                raise ValueError(f"SetCriterion: unknown loss {loss!r}; expected one of {sorted(self._LOSS_FNS)}")
        if class_loss not in ("ce", "focal"):
            raise ValueError(f"SetCriterion: class_loss must be 'ce' or 'focal', got {class_loss!r}")
        if proposal_empty_gt not in ("exclude", "original"):
            raise ValueError(f"SetCriterion: proposal_empty_gt must be 'exclude' or 'original', got {proposal_empty_gt!r}")
        self.num_classes = num_classes
        self.matcher = matcher
        self.weight_dict = weight_dict
        self.eos_coef = eos_coef
        self.losses = list(losses)
        self.num_points = num_points
        self.oversample_ratio = oversample_ratio
        self.importance_sample_ratio = importance_sample_ratio
        self.class_loss = class_loss
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma
        self.deep_supervision = deep_supervision
        self.single_matching = single_matching
        self.dn_enabled = dn_enabled
        self.dn_losses = list(losses if dn_losses is None else dn_losses)
        self.proposal_empty_gt = proposal_empty_gt
        empty_weight = torch.ones(num_classes + 1)
        if class_weights is not None:
            if class_loss != "ce" or len(class_weights) not in (num_classes, num_classes + 1):
                raise ValueError(f"MODEL.LOSS.CLASS_WEIGHTS ({len(class_weights)} entries) for a mask-classification "
                                 f"model needs the CE class loss and {num_classes} (or {num_classes + 1}) entries")
            # a label-map list also weighs "no class" pixels: only the K class entries apply to queries
            empty_weight[:num_classes] = torch.as_tensor([float(w) for w in class_weights[:num_classes]])
        empty_weight[-1] = eos_coef
        self.register_buffer("empty_weight", empty_weight, persistent=False)
        self._grid_targets = None

    # ------------------------------------------------------------------------------------------
    # individual losses
    # ------------------------------------------------------------------------------------------
    @staticmethod
    def _src_idx(indices: Indices, device) -> Tuple[torch.Tensor, torch.Tensor]:
        batch_idx = torch.cat([torch.full_like(src, i) for i, (src, _) in enumerate(indices)])
        src_idx = torch.cat([src for src, _ in indices])
        return batch_idx.to(device), src_idx.to(device)

    @classmethod
    def _matched(cls, pred: torch.Tensor, indices: Indices) -> torch.Tensor:
        """``pred[b, src]`` of every matched pair, image by image: ``B×Q×... -> N×...``.

        When every query of every image is matched in order (the denoising queries of a batch
        whose images have the same number of objects) this is ``pred`` flattened: a view, which
        spares the copy and the zero-filled full-size gradient of an index.
        """
        num_queries = pred.shape[1]
        if len(indices) == pred.shape[0] and all(
                len(src) == num_queries and bool((src.cpu() == torch.arange(num_queries)).all())
                for src, _ in indices):
            return pred.flatten(0, 1)
        return pred[cls._src_idx(indices, pred.device)]

    def loss_labels(self, outputs, targets, indices: Indices, num_masks: float) -> Dict[str, torch.Tensor]:
        """CE over K+1 with the no-object weight (mean), or sigmoid focal summed / num_masks.
        Queries without a match are no-object."""
        logits = outputs["pred_logits"].float()
        device = logits.device
        idx = self._src_idx(indices, device)
        target_classes_o = torch.cat([t["labels"][J] for t, (_, J) in zip(targets, indices)]).to(device)
        target_classes = torch.full(logits.shape[:2], self.num_classes, dtype=torch.int64, device=device)
        target_classes[idx] = target_classes_o.long()
        if self.class_loss == "ce":
            loss = F.cross_entropy(logits.transpose(1, 2), target_classes, self.empty_weight.to(device))
        else:
            onehot = torch.zeros(logits.shape[:2] + (self.num_classes + 1,), dtype=logits.dtype, device=device)
            onehot.scatter_(2, target_classes.unsqueeze(-1), 1)
            onehot = onehot[..., :-1]
            loss = sigmoid_focal_loss(logits, onehot, num_masks, self.focal_alpha, self.focal_gamma)
        return {"loss_ce": loss}

    def loss_boxes(self, outputs, targets, indices: Indices, num_masks: float) -> Dict[str, torch.Tensor]:
        """L1 and 1 - GIoU on matched cxcywh boxes, summed / num_masks."""
        if "pred_boxes" not in outputs:
            return {}
        pred = outputs["pred_boxes"]
        src_boxes = self._matched(pred, indices).float()
        tgt_boxes = torch.cat([t["boxes"][J] for t, (_, J) in zip(targets, indices)]).to(pred.device).float()
        loss_bbox = F.l1_loss(src_boxes, tgt_boxes, reduction="none").sum() / num_masks
        giou = torch.diag(generalized_box_iou(box_cxcywh_to_xyxy(src_boxes), box_cxcywh_to_xyxy(tgt_boxes)))
        loss_giou = (1 - giou).sum() / num_masks
        return {"loss_bbox": loss_bbox, "loss_giou": loss_giou}

    def loss_masks(self, outputs, targets, indices: Indices, num_masks: float) -> Dict[str, torch.Tensor]:
        """BCE and dice per matched pair, summed / num_masks: on PointRend points (the most
        uncertain of oversampled random points plus fresh random ones) or on the whole grid."""
        pred = outputs["pred_masks"]
        src_masks = self._matched(pred, indices).float()
        if src_masks.shape[0] == 0:
            zero = pred.sum() * 0.0
            return {"loss_mask": zero, "loss_dice": zero}
        if self.mask_sampling == "grid":
            grid_targets = self._grid_targets or _GridTargets(targets)
            resized = grid_targets.get(pred.shape[-2:], pred.device)
            labels = torch.cat([m[j.to(m.device)] for m, (_, j) in zip(resized, indices) if len(j)])
            loss_mask, loss_dice = sigmoid_ce_dice_loss(src_masks.flatten(1), labels.flatten(1), num_masks)
            return {"loss_mask": loss_mask, "loss_dice": loss_dice}
        tgt_masks = _pad_masks([t["masks"] for t in targets])
        src_masks = src_masks[:, None]
        with torch.no_grad():
            coords = get_uncertain_point_coords_with_randomness(
                src_masks, calculate_uncertainty, self.num_points, self.oversample_ratio,
                self.importance_sample_ratio,
            )
            point_labels = _sample_matched_targets(tgt_masks, indices, coords)
        point_logits = point_sample(src_masks, coords).squeeze(1)
        loss_mask, loss_dice = sigmoid_ce_dice_loss(point_logits, point_labels, num_masks)
        return {"loss_mask": loss_mask, "loss_dice": loss_dice}

    def get_loss(self, loss: str, outputs, targets, indices: Indices, num_masks: float) -> Dict[str, torch.Tensor]:
        """Compute one loss group (``labels``, ``masks`` or ``boxes``) for the matched ``indices``."""
        return getattr(self, self._LOSS_FNS[loss])(outputs, targets, indices, num_masks)

    def _all_losses(self, outputs, targets, indices, num_masks, suffix: str = "",
                    losses: Optional[Sequence[str]] = None) -> Dict[str, torch.Tensor]:
        out = {}
        for loss in self.losses if losses is None else losses:
            out.update({k + suffix: v for k, v in self.get_loss(loss, outputs, targets, indices, num_masks).items()})
        return out

    # ------------------------------------------------------------------------------------------
    # matching
    # ------------------------------------------------------------------------------------------
    def match_prediction_sets(self, outputs: Dict, targets) -> List[Indices]:
        """Indices for ``[final] + aux_outputs`` (same order).

        With ``single_matching`` every entry is the same object: the Hungarian solution of the
        per-image cost summed over all sets. Otherwise each set is matched independently (aux
        sets only when deep supervision is on).
        """
        aux = outputs.get("aux_outputs") or []
        sets = [outputs] + list(aux)
        if self.single_matching:
            per_set = [self.matcher.compute_cost_matrices(s, targets) for s in sets]
            summed = [torch.stack([costs[b] for costs in per_set]).sum(0) for b in range(len(targets))]
            shared = self.matcher.assign(summed)
            return [shared] * len(sets)
        indices = [self.matcher(outputs, targets)]
        if self.deep_supervision:
            indices += [self.matcher(s, targets) for s in aux]
        return indices

    @staticmethod
    def dn_indices(targets, num_groups: int, single_pad: int) -> Indices:
        """Fixed DN assignment: query ``g·single_pad + i`` <-> ground truth ``i`` of its image."""
        indices = []
        for t in targets:
            n = len(t["labels"])
            if n == 0:
                empty = torch.empty(0, dtype=torch.int64)
                indices.append((empty, empty.clone()))
                continue
            if n > single_pad:
                raise ValueError(f"SetCriterion: image has {n} objects but DN single_pad is {single_pad}")
            q = (torch.arange(num_groups)[:, None] * single_pad + torch.arange(n)[None, :]).flatten()
            indices.append((q, torch.arange(n).repeat(num_groups)))
        return indices

    # ------------------------------------------------------------------------------------------
    # special losses
    # ------------------------------------------------------------------------------------------
    def loss_proposal(self, pred_cost: torch.Tensor, min_costs: Sequence[torch.Tensor], targets) -> torch.Tensor:
        """UOME: L1 between the predicted matching cost of the selected tokens (``B×K`` in (0, 1))
        and each image's per-query minimum Hungarian cost, min–max normalised over its K queries."""
        preds, tgts = [], []
        for b, (t, c) in enumerate(zip(targets, min_costs)):
            if c.shape[0] != pred_cost.shape[1]:
                raise ValueError(
                    f"SetCriterion: pred_proposal_cost has {pred_cost.shape[1]} entries per image but the "
                    f"interm outputs have {c.shape[0]} queries; they must be the same selected tokens"
                )
            if len(t["labels"]) == 0 and self.proposal_empty_gt == "exclude":
                continue
            c = c.to(pred_cost.device).float()
            tgts.append((c - c.min()) / (c.max() - c.min() + 1e-6))
            preds.append(pred_cost[b].float())
        if not preds:
            return pred_cost.sum() * 0.0
        return F.l1_loss(torch.stack(preds), torch.stack(tgts))

    def _dn_losses(self, outputs: Dict, targets, num_masks: float) -> Dict[str, torch.Tensor]:
        """``_dn`` / ``_dn_{i}`` losses, or grad-safe zeros with the same keys without DN."""
        dn = outputs.get("dn_outputs")
        num_aux = len(outputs.get("aux_outputs") or []) if self.deep_supervision else 0
        if dn is None or dn.get("outputs") is None or dn.get("num_groups", 0) <= 0:
            # Zero in the graph (0 · a prediction) so DDP sees every parameter it saw before.
            zero = outputs["pred_logits"].sum() * 0.0
            keys = [k for loss in self.dn_losses for k in LOSS_KEYS[loss]
                    if loss != "boxes" or "pred_boxes" in outputs]
            suffixes = ["_dn"] + [f"_dn_{i}" for i in range(num_aux)]
            return {k + s: zero for s in suffixes for k in keys}
        dn_out = dn["outputs"]
        groups = int(dn["num_groups"])
        indices = self.dn_indices(targets, groups, int(dn["single_pad"]))
        num_masks_dn = num_masks * groups
        losses = self._all_losses(dn_out, targets, indices, num_masks_dn, "_dn", self.dn_losses)
        if self.deep_supervision:
            for i, aux in enumerate(dn_out.get("aux_outputs") or []):
                losses.update(self._all_losses(aux, targets, indices, num_masks_dn, f"_dn_{i}", self.dn_losses))
        return losses

    # ------------------------------------------------------------------------------------------
    def get_num_masks(self, targets, device) -> float:
        """Ground-truth objects of the batch averaged over processes, at least 1."""
        n = torch.as_tensor([float(sum(len(t["labels"]) for t in targets))], device=device)
        comm.all_reduce(n)
        return max(n.item() / comm.get_world_size(), 1.0)

    def forward(self, outputs: Dict, targets: Sequence[Dict[str, torch.Tensor]]) -> Dict[str, torch.Tensor]:
        """
        Args:
            outputs: the decoder output dict (contract of
                :mod:`skinformer.modeling.transformer_decoder`).
            targets: per image ``{"labels", "masks", "boxes"}``.
        Returns:
            dict of unweighted scalar losses.
        """
        device = outputs["pred_logits"].device
        num_masks = self.get_num_masks(targets, device)
        self._grid_targets = _GridTargets(targets) if self.mask_sampling == "grid" else None
        try:
            return self._forward(outputs, targets, num_masks)
        finally:
            self._grid_targets = None

    def _forward(self, outputs: Dict, targets, num_masks: float) -> Dict[str, torch.Tensor]:
        indices = self.match_prediction_sets(outputs, targets)
        losses = self._all_losses(outputs, targets, indices[0], num_masks)
        if self.deep_supervision:
            for i, aux in enumerate(outputs.get("aux_outputs") or []):
                losses.update(self._all_losses(aux, targets, indices[i + 1], num_masks, f"_{i}"))

        interm = outputs.get("interm_outputs")
        if interm is not None:
            interm_indices, min_costs = self.matcher(interm, targets, return_min_cost_per_query=True)
            losses.update(self._all_losses(interm, targets, interm_indices, num_masks, "_interm"))
            if outputs.get("pred_proposal_cost") is not None:
                losses["proposal_loss"] = self.loss_proposal(outputs["pred_proposal_cost"], min_costs, targets)
        elif outputs.get("pred_proposal_cost") is not None:
            raise ValueError("SetCriterion: 'pred_proposal_cost' needs 'interm_outputs' (its targets come from them)")

        if self.dn_enabled or outputs.get("dn_outputs") is not None:
            losses.update(self._dn_losses(outputs, targets, num_masks))
        return losses

    def extra_repr(self) -> str:
        """Module summary: number of classes, losses and the main options."""
        return (f"num_classes={self.num_classes}, losses={self.losses}, class_loss={self.class_loss!r}, "
                f"eos_coef={self.eos_coef}, num_points={self.num_points}, single_matching={self.single_matching}, "
                f"dn_enabled={self.dn_enabled}, proposal_empty_gt={self.proposal_empty_gt!r}, "
                f"mask_sampling={self.mask_sampling!r}")
