"""Metric formulas on confusion counts, shared by the evaluators and the folder scoring of
:mod:`skinformer.evaluation.folder` (``tools/evaluate.py``).

Everything here is a pure function of tensors: counting functions turn predicted / ground-truth
label maps into confusion counts (``torch.bincount`` on the tensors' device, no Python loops over
pixels), and metric functions turn counts into numbers. Keeping the formulas in one place means the
in-training evaluators and the offline folder scorer can never disagree.

Conventions:

* Binary counts are stored in the order :data:`BINARY_COUNT_ORDER` = ``(tp, fp, fn, tn)`` along
  the last dimension.
* All values are fractions in ``[0, 1]`` (the official ISIC scorer reports fractions too).
* Empty denominators follow the rule of the benchmark each function implements and are spelled
  out in each docstring: the official ISIC 2018 rules count them as 1 (Task 1 per image, Task 2),
  the pooled pixel metrics count them as 0, and the per-class semantic metrics give NaN (the class
  is then left out of the means, as in detectron2).
"""
from typing import Dict, Optional, Sequence

import torch

# the decision rule lives with the label space; re-exported for the evaluators' callers
from skinformer.structures.label_space import (
    LabelSpace, foreground_from_scores, labels_from_scores, multilabel_from_scores,
)

__all__ = [
    "BINARY_COUNT_ORDER", "ISIC_TASK1_PER_IMAGE_KEYS", "POOLED_BINARY_KEYS",
    "labels_from_scores", "foreground_from_scores", "multilabel_from_scores",
    "binary_confusion", "multilabel_confusion", "confusion_matrix", "score_histograms",
    "isic_task1_per_image", "pooled_binary_metrics", "isic_task1_statistics", "isic_task1_summary",
    "isic_task2_summary", "confusion_matrix_metrics", "sem_seg_summary", "roc_auc_from_histograms",
]

BINARY_COUNT_ORDER = ("tp", "fp", "fn", "tn")
#: per-image metrics of the official ISIC 2018 Task 1 scorer (each averaged over images)
ISIC_TASK1_PER_IMAGE_KEYS = ("threshold_jaccard", "jaccard", "dice", "sensitivity", "specificity", "accuracy")
#: pooled (micro) pixel metrics: TP/FP/FN/TN summed over every pixel of every image
POOLED_BINARY_KEYS = ("precision", "recall", "accuracy", "dice", "iou")
#: Task 1 "thresholded Jaccard": a per-image Jaccard below this counts 0
ISIC_JACCARD_THRESHOLD = 0.65


# ---------------------------------------------------------------------------------------------
# Counting (device-side bincount)
# ---------------------------------------------------------------------------------------------
def _as_uint8(t: torch.Tensor) -> torch.Tensor:
    # bool and uint8 share a 1-byte layout: reinterpret instead of copying a whole mask
    return t.view(torch.uint8) if t.dtype == torch.bool else t.to(torch.uint8)


def binary_confusion(pred: torch.Tensor, gt: torch.Tensor, valid: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Binary confusion counts of ``pred`` vs ``gt`` (bool ``H×W``), ignoring ``~valid`` pixels.

    Returns int64 ``[tp, fp, fn, tn]`` on the inputs' device. One ``bincount`` over a uint8 code
    (``2·pred + gt``, 4 = ignored) is several times faster than separate boolean sums.
    """
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} != ground-truth shape {tuple(gt.shape)}")
    code = torch.add(_as_uint8(gt), _as_uint8(pred), alpha=2)
    nbins = 4
    if valid is not None:
        code = code.masked_fill(~valid, 4)
        nbins = 5
    # code: 0 = tn, 1 = fn, 2 = fp, 3 = tp
    c = torch.bincount(code.reshape(-1), minlength=nbins)[:4]
    return torch.stack([c[3], c[2], c[1], c[0]])


def multilabel_confusion(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Per-class binary confusion counts of bool ``K×H×W`` masks: int64 ``K×4`` (tp, fp, fn, tn)."""
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} != ground-truth shape {tuple(gt.shape)}")
    k = pred.shape[0]
    # code per pixel in 0..3, offset by 4·class so one bincount covers all classes (4K <= 255 for K <= 63)
    dtype = torch.uint8 if 4 * k <= 255 else torch.int32
    offset = (torch.arange(k, device=pred.device, dtype=dtype) * 4).view(k, *([1] * (pred.dim() - 1)))
    if dtype == torch.uint8:
        code = torch.add(_as_uint8(gt), _as_uint8(pred), alpha=2).add_(offset)
    else:
        code = torch.add(gt.to(dtype), pred.to(dtype), alpha=2).add_(offset)
    c = torch.bincount(code.reshape(-1), minlength=4 * k).view(k, 4)
    return torch.stack([c[:, 3], c[:, 2], c[:, 1], c[:, 0]], dim=1)


def confusion_matrix(pred: torch.Tensor, gt: torch.Tensor, num_bins: int, ignore_label: int) -> torch.Tensor:
    """``num_bins × num_bins`` confusion matrix (rows = ground truth, columns = prediction), int64.

    ``pred`` and ``gt`` are integer label maps ``H×W`` with values in ``0..num_bins-1``; ground-truth
    pixels equal to ``ignore_label`` (or outside the range) are not counted.
    """
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} != ground-truth shape {tuple(gt.shape)}")
    n = num_bins
    # int16 indices keep the bincount input small (n*n+1 <= 32767 for n <= 181); int32 beyond
    dtype = torch.int16 if n * n < 2 ** 15 - 1 else torch.int32
    gt_i = gt.to(dtype)
    valid = (gt != ignore_label) & (gt >= 0) & (gt < n)
    code = (gt_i * n + pred.to(dtype)).masked_fill_(~valid, n * n)
    return torch.bincount(code.reshape(-1), minlength=n * n + 1)[: n * n].view(n, n)


def score_histograms(scores: torch.Tensor, gt: torch.Tensor, ignore_label: int, num_bins: int = 1000) -> torch.Tensor:
    """Fixed-bin histograms of each class's scores for its positive and negative pixels.

    ``scores``: float ``K×H×W`` in ``[0, 1]`` (clamped); ``gt``: label map ``H×W``. Returns int64
    ``K×2×num_bins``: ``[:, 0]`` counts negatives (``gt != c``), ``[:, 1]`` positives (``gt == c``);
    ignored pixels are skipped. Memory is bounded by ``num_bins`` whatever the data set size, and
    the histograms of several processes simply add.
    """
    k = scores.shape[0]
    bins = (scores.float().clamp(0, 1) * num_bins).long().clamp_(max=num_bins - 1)  # K×H×W
    classes = torch.arange(k, device=scores.device).view(k, 1, 1)
    is_pos = (gt.unsqueeze(0) == classes).long()
    code = (classes * 2 + is_pos) * num_bins + bins
    valid = (gt != ignore_label).unsqueeze(0).expand_as(code)
    code = code.masked_fill(~valid, k * 2 * num_bins)
    hist = torch.bincount(code.reshape(-1), minlength=k * 2 * num_bins + 1)[: k * 2 * num_bins]
    return hist.view(k, 2, num_bins)


# ---------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------
def _div(num: torch.Tensor, den: torch.Tensor, empty: float) -> torch.Tensor:
    """``num / den`` in float64, with ``empty`` where ``den == 0``."""
    num = num.double()
    den = den.double()
    return torch.where(den > 0, num / den.clamp(min=1e-300), torch.full_like(den, empty))


def _split(counts: torch.Tensor):
    counts = torch.as_tensor(counts)
    return counts[..., 0], counts[..., 1], counts[..., 2], counts[..., 3]


def isic_task1_per_image(counts: torch.Tensor) -> Dict[str, torch.Tensor]:
    """Official ISIC 2018 Task 1 per-image metrics from per-image counts ``N×4`` (tp, fp, fn, tn).

    Empty denominators count 1: Jaccard and Dice when ``tp+fp+fn == 0``, sensitivity when
    ``tp+fn == 0``, specificity when ``tn+fp == 0`` (and accuracy for a 0-pixel image).
    Thresholded Jaccard is the Jaccard when it is ``>= 0.65`` and 0 otherwise.
    Returns ``{name: float64 N}`` for :data:`ISIC_TASK1_PER_IMAGE_KEYS`.
    """
    tp, fp, fn, tn = _split(counts)
    jaccard = _div(tp, tp + fp + fn, 1.0)
    return {
        "threshold_jaccard": torch.where(jaccard >= ISIC_JACCARD_THRESHOLD, jaccard, torch.zeros_like(jaccard)),
        "jaccard": jaccard,
        "dice": _div(2 * tp, 2 * tp + fp + fn, 1.0),
        "sensitivity": _div(tp, tp + fn, 1.0),
        "specificity": _div(tn, tn + fp, 1.0),
        "accuracy": _div(tp + tn, tp + fp + fn + tn, 1.0),
    }


def pooled_binary_metrics(counts: torch.Tensor) -> Dict[str, torch.Tensor]:
    """Pooled pixel metrics from counts ``[..., 4]`` (tp, fp, fn, tn) summed over all pixels.

    precision = tp/(tp+fp), recall = tp/(tp+fn), accuracy = (tp+tn)/all, Dice = 2tp/(2tp+fp+fn),
    IoU = tp/(tp+fp+fn); each is 0 when its denominator is 0.
    """
    tp, fp, fn, tn = _split(counts)
    return {
        "precision": _div(tp, tp + fp, 0.0),
        "recall": _div(tp, tp + fn, 0.0),
        "accuracy": _div(tp + tn, tp + fp + fn + tn, 0.0),
        "dice": _div(2 * tp, 2 * tp + fp + fn, 0.0),
        "iou": _div(tp, tp + fp + fn, 0.0),
    }


def isic_task1_statistics(counts: torch.Tensor) -> torch.Tensor:
    """Summable statistics of per-image counts ``N×4``: float64 vector
    ``[sum of each per-image metric (6), N, tp, fp, fn, tn]``.

    Sums add across processes, so a distributed evaluation all-reduces this small vector instead of
    gathering per-image data. Pass the (reduced) vector to :func:`isic_task1_summary`.
    """
    counts = torch.as_tensor(counts).reshape(-1, 4)
    per_image = isic_task1_per_image(counts)
    sums = torch.stack([per_image[k].sum() for k in ISIC_TASK1_PER_IMAGE_KEYS])
    n = torch.tensor([float(counts.shape[0])], dtype=torch.float64, device=counts.device)
    return torch.cat([sums, n, counts.double().sum(dim=0)])


def isic_task1_summary(statistics: torch.Tensor) -> Dict[str, float]:
    """Official Task 1 means over images (NaN without images) plus ``pooled_*`` pixel metrics."""
    stats = torch.as_tensor(statistics, dtype=torch.float64).cpu()
    nk = len(ISIC_TASK1_PER_IMAGE_KEYS)
    n = float(stats[nk])
    out = {k: (float(stats[i]) / n if n > 0 else float("nan")) for i, k in enumerate(ISIC_TASK1_PER_IMAGE_KEYS)}
    pooled = pooled_binary_metrics(stats[nk + 1: nk + 5])
    out.update({f"pooled_{k}": float(v) for k, v in pooled.items()})
    return out


def isic_task2_summary(normalized_counts: torch.Tensor, attribute_names: Sequence[str]) -> Dict[str, float]:
    """Official ISIC 2018 Task 2 scores from ``A×4`` counts (tp, fp, fn, tn), each image's counts
    already divided by its pixel count and summed over images.

    Per attribute: Jaccard = tp/(tp+fp+fn), Dice = 2tp/(2tp+fp+fn), both 1.0 when the denominator
    is 0 (attribute absent everywhere and never predicted). ``jaccard_micro`` / ``dice_micro``
    (the headline) use the counts summed over all attributes; ``*_mean`` average the attributes.
    """
    counts = torch.as_tensor(normalized_counts, dtype=torch.float64).cpu().reshape(-1, 4)
    if counts.shape[0] != len(attribute_names):
        raise ValueError(f"{counts.shape[0]} rows of counts for {len(attribute_names)} attributes {list(attribute_names)}")
    tp, fp, fn, _ = _split(counts)
    jac = _div(tp, tp + fp + fn, 1.0)
    dice = _div(2 * tp, 2 * tp + fp + fn, 1.0)
    stp, sfp, sfn, _ = _split(counts.sum(dim=0))
    out = {
        "jaccard_micro": float(_div(stp, stp + sfp + sfn, 1.0)),
        "dice_micro": float(_div(2 * stp, 2 * stp + sfp + sfn, 1.0)),
        "jaccard_mean": float(jac.mean()) if len(attribute_names) else float("nan"),
        "dice_mean": float(dice.mean()) if len(attribute_names) else float("nan"),
    }
    for i, name in enumerate(attribute_names):
        out[f"jaccard-{name}"] = float(jac[i])
        out[f"dice-{name}"] = float(dice[i])
    return out


def confusion_matrix_metrics(conf: torch.Tensor) -> Dict[str, torch.Tensor]:
    """Per-bin metrics of an ``N×N`` confusion matrix (rows = ground truth, columns = prediction).

    Returns float64 ``N`` tensors ``iou``, ``dice``, ``precision``, ``recall`` (NaN where the
    denominator is 0, i.e. the class is absent from both ground truth and prediction, or never
    predicted / never present), ``gt_pixels``, and scalars ``pixel_accuracy`` (correct / all
    counted pixels) and ``fwiou`` (IoU weighted by ground-truth frequency over all bins).
    """
    conf = torch.as_tensor(conf).double().cpu()
    tp = conf.diag()
    gt_pixels = conf.sum(dim=1)
    pred_pixels = conf.sum(dim=0)
    fp = pred_pixels - tp
    fn = gt_pixels - tp
    nan = float("nan")
    iou = _div(tp, tp + fp + fn, nan)
    total = conf.sum()
    freq = gt_pixels / total if total > 0 else torch.zeros_like(gt_pixels)
    known = ~torch.isnan(iou)
    return {
        "iou": iou,
        "dice": _div(2 * tp, 2 * tp + fp + fn, nan),
        "precision": _div(tp, tp + fp, nan),
        "recall": _div(tp, tp + fn, nan),
        "gt_pixels": gt_pixels,
        "pixel_accuracy": _div(tp.sum(), total, nan),
        "fwiou": (freq[known] * iou[known]).sum() if total > 0 else torch.tensor(nan, dtype=torch.float64),
    }


def _nanmean(x: torch.Tensor) -> float:
    x = x[~torch.isnan(x)]
    return float(x.mean()) if x.numel() else float("nan")


def sem_seg_summary(conf: torch.Tensor, label_space: LabelSpace,
                    auc: Optional[torch.Tensor] = None) -> Dict[str, float]:
    """Semantic segmentation results from the ``(K+1)×(K+1)`` confusion matrix.

    Bins ``0..K-1`` are the ``label_space.classes``; bin ``K`` is "background, no class" (empty
    when background is one of the classes, at ``label_space.background_index``). Per class ``IoU-``/``Dice-``/``Precision-``/``Recall-<name>``;
    means ``mIoU``, ``mDice``, ``mPrecision``, ``mRecall`` over the K classes (NaN classes
    skipped); ``pACC`` and ``fwIoU`` over all counted pixels. When background is one of the
    classes, ``mIoU_fg`` / ``mDice_fg`` average the other classes; when it is not, the no-class
    bin is reported as ``IoU-background`` / ``Dice-background`` but kept out of the means.
    ``auc`` (``K``, optional) adds ``AUC-<name>`` and ``mAUC``.
    """
    class_names = list(label_space.classes)
    background_is_class = label_space.background_is_class
    k = len(class_names)
    if conf.shape != (k + 1, k + 1):
        raise ValueError(f"confusion matrix shape {tuple(conf.shape)} does not match {k} classes (+1 bin)")
    m = confusion_matrix_metrics(conf)
    out = {
        "mIoU": _nanmean(m["iou"][:k]),
        "mDice": _nanmean(m["dice"][:k]),
        "mPrecision": _nanmean(m["precision"][:k]),
        "mRecall": _nanmean(m["recall"][:k]),
        "pACC": float(m["pixel_accuracy"]),
        "fwIoU": float(m["fwiou"]),
    }
    if background_is_class:
        fg = [i for i in range(k) if i != label_space.background_index]
        out["mIoU_fg"] = _nanmean(m["iou"][fg]) if fg else float("nan")
        out["mDice_fg"] = _nanmean(m["dice"][fg]) if fg else float("nan")
    names = list(class_names) + ([] if background_is_class else ["background"])
    for i, name in enumerate(names):
        for key, metric in (("IoU", "iou"), ("Dice", "dice"), ("Precision", "precision"), ("Recall", "recall")):
            out[f"{key}-{name}"] = float(m[metric][i])
    if auc is not None:
        auc = torch.as_tensor(auc, dtype=torch.float64).cpu()
        out["mAUC"] = _nanmean(auc)
        for i, name in enumerate(class_names):
            out[f"AUC-{name}"] = float(auc[i])
    return out


def roc_auc_from_histograms(hist: torch.Tensor) -> torch.Tensor:
    """ROC-AUC per class from :func:`score_histograms` output ``K×2×B`` (negatives, positives).

    Exact Mann-Whitney AUC of the binned scores: a negative scores below every positive of a higher
    bin and ties (same bin) count one half. NaN for a class without positives or negatives.
    """
    hist = torch.as_tensor(hist).double().cpu()
    neg, pos = hist[:, 0], hist[:, 1]
    n_neg, n_pos = neg.sum(dim=1), pos.sum(dim=1)
    # positives in strictly higher bins than each bin, for every class
    pos_above = pos.flip(1).cumsum(1).flip(1) - pos
    wins = (neg * (pos_above + 0.5 * pos)).sum(dim=1)
    return _div(wins, n_neg * n_pos, float("nan"))
