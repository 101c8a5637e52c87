"""Per-image metrics (pure functions on masks / counts), the original projects' conventions spelled out.

Counts are ``K×4`` int64 in :data:`~skinformer.evaluation.metrics.BINARY_COUNT_ORDER`
``(tp, fp, fn, tn)`` for one image. Empty-image conventions (``empty``), for a class that is
absent from both the prediction and the ground truth of an image:

* ``"one"`` (ISIC 2018 Task 1 scorer): Jaccard / Dice / recall / precision / F-scores count 1;
* ``"skip"`` (DermoscopicSegmentation's per-image Jaccard): the value is NaN and the image is left
  out of that class's mean over images;
* ``"zero"`` (skin_segmentor's "0 on an empty denominator"): the value is 0.

Any other empty denominator (e.g. precision with no predicted pixel but some ground truth) is 0,
and specificity with no negative pixel is 1 (ISIC rule). ``smoothed_jaccard`` is
DermoscopicSegmentation's ``I / (P + G - I + 1)`` (skipped when both are empty).
"""
from typing import Dict, Optional

import numpy as np
import torch

__all__ = [
    "EMPTY_CONVENTIONS", "PER_IMAGE_KEYS", "per_image_scores", "per_image_roc_auc", "boundary_iou", "hd95",
    "foreground_background_iou", "confusion_summary",
]

EMPTY_CONVENTIONS = ("one", "skip", "zero")
PER_IMAGE_KEYS = ("jaccard", "dice", "recall", "specificity", "precision", "f1", "f2", "accuracy",
                  "smoothed_jaccard")


def _ratio(num: torch.Tensor, den: torch.Tensor, fill: float) -> torch.Tensor:
    return torch.where(den > 0, num / den.clamp(min=1e-12), torch.full_like(num, fill))


def per_image_scores(counts: torch.Tensor, empty: str = "one") -> Dict[str, torch.Tensor]:
    """``counts`` ``K×4`` (one image) -> ``{metric: K}`` float64, see the module docstring.

    F-beta = (1 + b²)·TP / ((1 + b²)·TP + b²·FN + FP) (F1: b = 1; F2 weighs recall 4x)."""
    if empty not in EMPTY_CONVENTIONS:
        raise ValueError(f"empty-image convention '{empty}' unknown; expected one of {EMPTY_CONVENTIONS}")
    c = counts.double()
    tp, fp, fn, tn = c.unbind(-1)
    both_empty = (tp + fp + fn) == 0
    out = {
        "jaccard": _ratio(tp, tp + fp + fn, 0.0),
        "dice": _ratio(2 * tp, 2 * tp + fp + fn, 0.0),
        "recall": _ratio(tp, tp + fn, 0.0),
        "precision": _ratio(tp, tp + fp, 0.0),
        "f1": _ratio(2 * tp, 2 * tp + fn + fp, 0.0),
        "f2": _ratio(5 * tp, 5 * tp + 4 * fn + fp, 0.0),
    }
    fill = {"one": 1.0, "skip": float("nan"), "zero": 0.0}[empty]
    out = {k: torch.where(both_empty, torch.full_like(v, fill), v) for k, v in out.items()}
    out["specificity"] = _ratio(tn, tn + fp, 1.0)
    out["accuracy"] = _ratio(tp + tn, tp + fp + fn + tn, 0.0)
    smoothed = tp / (2 * tp + fp + fn - tp + 1.0)  # I / (P + G - I + 1)
    out["smoothed_jaccard"] = torch.where(both_empty, torch.full_like(smoothed, float("nan")), smoothed)
    return out


def per_image_roc_auc(scores: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Per-class ROC-AUC of one image's pixel scores ``K×H×W`` against bool ``K×H×W`` ground truth
    (Mann-Whitney U with average ranks for ties, = sklearn's ``roc_auc_score``). NaN where the class
    is not both present and absent in the image (the DermoscopicSegmentation rule)."""
    from scipy.stats import rankdata

    s = scores.detach().float().cpu().numpy().reshape(scores.shape[0], -1)
    g = gt.cpu().numpy().reshape(gt.shape[0], -1).astype(bool)
    out = np.full(s.shape[0], np.nan)
    for k in range(s.shape[0]):
        n_pos = int(g[k].sum())
        n_neg = g[k].size - n_pos
        if n_pos == 0 or n_neg == 0:
            continue
        ranks = rankdata(s[k])
        out[k] = (ranks[g[k]].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
    return torch.from_numpy(out)


def _boundary(mask: np.ndarray, width: int) -> np.ndarray:
    import cv2

    m = mask.astype(np.uint8)
    # pad so that the image border does not count as an object boundary
    padded = cv2.copyMakeBorder(m, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    eroded = cv2.erode(padded, np.ones((3, 3), np.uint8), iterations=width)[1:-1, 1:-1]
    return (m - eroded).astype(bool)


def boundary_iou(pred: torch.Tensor, gt: torch.Tensor, dilation_ratio: float = 0.02) -> float:
    """Boundary IoU (Cheng et al., 2021) of bool ``H×W`` masks: IoU of the pixels within
    ``d = max(1, round(dilation_ratio · image diagonal))`` of each mask's contour (inside the mask).
    Both empty -> 1; one empty -> 0."""
    p, g = pred.cpu().numpy().astype(bool), gt.cpu().numpy().astype(bool)
    if not p.any() and not g.any():
        return 1.0
    d = max(1, int(round(dilation_ratio * float(np.hypot(*p.shape)))))
    bp, bg = _boundary(p, d), _boundary(g, d)
    union = (bp | bg).sum()
    return float((bp & bg).sum() / union) if union else 0.0


def hd95(pred: torch.Tensor, gt: torch.Tensor) -> float:
    """95th percentile of the symmetric surface distances (pixels) between bool ``H×W`` masks:
    the distances from every contour pixel of one mask to the other's contour, both directions
    pooled. Both empty -> 0; exactly one empty -> NaN (undefined; left out of the mean)."""
    from scipy import ndimage

    p, g = pred.cpu().numpy().astype(bool), gt.cpu().numpy().astype(bool)
    if not p.any() and not g.any():
        return 0.0
    if not p.any() or not g.any():
        return float("nan")
    bp, bg = _boundary(p, 1), _boundary(g, 1)
    to_g = ndimage.distance_transform_edt(~bg)
    to_p = ndimage.distance_transform_edt(~bp)
    return float(np.percentile(np.concatenate([to_g[bp], to_p[bg]]), 95))


def foreground_background_iou(counts: torch.Tensor) -> Dict[str, float]:
    """SiMaskFormer's per-image binary IoUs from ``[tp, fp, fn, tn]``: foreground, background (the
    roles swapped: tn / (tn + fp + fn)) and their mean; an empty union counts 1."""
    tp, fp, fn, tn = (float(x) for x in counts)
    fg = tp / (tp + fp + fn) if tp + fp + fn else 1.0
    bg = tn / (tn + fp + fn) if tn + fp + fn else 1.0
    return {"iou_fg": fg, "iou_bg": bg, "iou_mean": (fg + bg) / 2}


def confusion_summary(conf: torch.Tensor, class_weights: Optional[torch.Tensor] = None) -> Dict[str, float]:
    """Pooled scores of a ``C×C`` confusion matrix (rows = ground truth, columns = prediction),
    background included as a class: ``mIoU`` (mean IoU over classes present in gt or prediction),
    ``fwIoU`` (IoU weighted by ground-truth frequency), ``mACC`` (mean per-class recall over classes
    present in the ground truth) and ``pACC`` (pixel accuracy)."""
    c = conf.double()
    tp = c.diag()
    gt = c.sum(1)
    pred = c.sum(0)
    union = gt + pred - tp
    iou = torch.where(union > 0, tp / union.clamp(min=1e-12), torch.full_like(tp, float("nan")))
    acc = torch.where(gt > 0, tp / gt.clamp(min=1e-12), torch.full_like(tp, float("nan")))
    total = c.sum().clamp(min=1e-12)
    freq = gt / total
    return {
        "mIoU": float(torch.nanmean(iou)),
        "fwIoU": float(torch.nansum(freq * iou)),
        "mACC": float(torch.nanmean(acc)),
        "pACC": float(tp.sum() / total),
    }
