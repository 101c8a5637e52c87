"""Score a folder of predicted masks against a folder of ground-truth masks (``skinformer-evaluate``).

Metrics (formulas shared with the in-training evaluators, :mod:`skinformer.evaluation.metrics`):

* ``isic_task1``: official ISIC 2018 Task 1 (per-image Jaccard, thresholded Jaccard, Dice,
  sensitivity, specificity, accuracy, averaged over images) plus the pooled ``pooled_*`` metrics.
* ``binary_pooled``: only the pooled pixel metrics (precision, recall, accuracy, Dice, IoU over all
  pixels of all images; skin_segmentor's evaluate.py).
* ``isic_task2``: official ISIC 2018 Task 2 (per-image normalised counts; per-attribute and micro
  Jaccard / Dice). Files are named ``<image id>_attribute_<attribute><suffix>``, e.g.
  ``ISIC_0000000_attribute_globules.png``, and are matched by image id + attribute.
* ``sem_seg``: index masks (``0..K-1`` classes, ``K`` = background when background is not a class,
  ``ignore_label`` ignored) -> per-class IoU / Dice / precision / recall, mIoU, mDice, pACC, fwIoU.

Matching: a file's key is its name without the ground-truth / prediction suffix; only files ending
with the suffix are considered. Without a prediction suffix, predictions named exactly like the
ground truth (the ISIC submission name ``ISIC_xxxxxxx_segmentation.png``) pair by name; otherwise
the prediction suffix is ``.png`` (``ISIC_xxxxxxx.png``). Every ground-truth file needs exactly one
prediction and vice versa, and both must have the same size (the official rule: predictions at the
original resolution). Binary masks are binarised at ``value > threshold`` (default 127, i.e. >= 128
like :mod:`skinformer.data.mask_io`; the official ISIC scorer uses > 128, which only differs for
the value 128), or ``> 0`` for 0/1 masks; colour masks by their brightest channel (a red lesion is
foreground). Masks holding small label values (e.g. {0, 1, 2}) are an error naming the file.
Problems raise :class:`MaskFolderError` (or :class:`~skinformer.data.mask_io.DataFileError` for an
unreadable file) naming the files.
"""
import os
import re
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from skinformer.data import mask_io
from skinformer.evaluation import metrics as M
from skinformer.structures.label_space import LabelSpace

__all__ = [
    "METRICS", "DEFAULT_GT_SUFFIX", "MaskFolderError", "FolderScoring", "score_folders", "list_masks",
    "pair_files", "read_binary", "read_labels", "resolve_pred_suffix",
]

TASK2_NAME = re.compile(r"^(?P<image>.+?)_attribute_(?P<attribute>.+)$")
DEFAULT_GT_SUFFIX = {"isic_task1": "_segmentation.png", "binary_pooled": "_segmentation.png",
                     "isic_task2": ".png", "sem_seg": ".png"}


class MaskFolderError(ValueError):
    """Folders that cannot be scored: unmatched files, size mismatches, bad values."""


@dataclass
class FolderScoring:
    """What to score and how; ``gt_suffix`` / ``pred_suffix`` are resolved by :func:`score_folders`.

    Attributes:
        gt_dir, pred_dir: folders of ground-truth and predicted masks.
        metric: a key of :data:`METRICS`.
        gt_suffix: ground-truth file-name ending removed to get the key (``None``: :data:`DEFAULT_GT_SUFFIX`).
        pred_suffix: prediction file-name ending (``None``: :func:`resolve_pred_suffix`).
        threshold: binary masks: foreground is ``value > threshold`` (0/1 masks: ``> 0``).
        attributes: isic_task2: attributes to score, in this order (``None``: every one found).
        num_classes, class_names, ignore_label, background_is_class, background_index: sem_seg's
            label space (``background_index`` is the background class of the ``*_fg`` means).
    """

    gt_dir: str
    pred_dir: str
    metric: str
    gt_suffix: Optional[str] = None
    pred_suffix: Optional[str] = None
    threshold: float = 127
    attributes: Optional[Sequence[str]] = None
    num_classes: Optional[int] = None
    class_names: Optional[Sequence[str]] = None
    ignore_label: Optional[int] = 255
    background_is_class: bool = False
    background_index: int = 0


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------
def list_masks(folder: str, suffix: str, what: str) -> Dict[str, str]:
    """``{key: path}`` for the files in ``folder`` whose name ends with ``suffix`` (key = name minus suffix).

    ``what`` is "ground-truth" or "prediction" and names the folder (and its suffix option) in errors.
    """
    if not os.path.isdir(folder):
        raise MaskFolderError(f"{what} folder {folder!r} does not exist")
    names = sorted(os.listdir(folder))
    out = {n[: len(n) - len(suffix)]: os.path.join(folder, n) for n in names
           if n.endswith(suffix) and len(n) > len(suffix) and os.path.isfile(os.path.join(folder, n))}
    if not out:
        raise MaskFolderError(
            f"No {what} files ending with {suffix!r} in {folder!r} (found e.g. {names[:5]}); "
            f"set --{'gt' if what == 'ground-truth' else 'pred'}-suffix"
        )
    return out


def _list_preview(items: Sequence[str], n: int = 10) -> str:
    items = sorted(items)
    return ", ".join(items[:n]) + (f" ... ({len(items)} in all)" if len(items) > n else "")


def pair_files(gt: Dict, pred: Dict) -> List[Tuple]:
    """``[(key, gt_path, pred_path)]``; raises naming the files of either side that have no partner."""
    missing = [gt[k] for k in gt if k not in pred]
    extra = [pred[k] for k in pred if k not in gt]
    errors = []
    if missing:
        errors.append(f"{len(missing)} ground-truth file(s) without a prediction: {_list_preview(missing)}")
    if extra:
        errors.append(f"{len(extra)} prediction file(s) without ground truth: {_list_preview(extra)}")
    if errors:
        raise MaskFolderError("; ".join(errors))
    return [(k, gt[k], pred[k]) for k in sorted(gt)]


def read_binary(file_name: str, threshold: float) -> np.ndarray:
    """Bool ``H×W`` mask (:func:`skinformer.data.mask_io.decode_binary`): ``value > threshold``,
    ``> 0`` for 0/1 masks, brightest channel of colour masks; label maps such as {0, 1, 2} are an error."""
    return mask_io.read_binary_mask(file_name, threshold)


def read_labels(file_name: str, num_bins: int, ignore_label: Optional[int]) -> np.ndarray:
    """Index mask ``H×W`` int64 with values in ``0..num_bins-1`` (or ``ignore_label`` when given)."""
    arr = mask_io.to_single_channel(mask_io.read_mask_array(file_name), file_name, "index").astype(np.int64)
    values = np.unique(arr)
    bad = [int(v) for v in values if not (0 <= v < num_bins) and v != ignore_label]
    if bad:
        allowed = f"0..{num_bins - 1}" + (f" and ignore {ignore_label}" if ignore_label is not None else "")
        raise MaskFolderError(f"{file_name}: label values {bad[:10]} outside {allowed}")
    return arr


def _check_size(gt: np.ndarray, pred: np.ndarray, gt_file: str, pred_file: str) -> None:
    if gt.shape[:2] != pred.shape[:2]:
        raise MaskFolderError(
            f"Size mismatch: prediction {pred_file} is {pred.shape[1]}×{pred.shape[0]} (W×H) but ground truth "
            f"{gt_file} is {gt.shape[1]}×{gt.shape[0]}; predictions must be at the original resolution"
        )


def resolve_pred_suffix(pred_dir: str, gt_suffix: str, pred_suffix: Optional[str] = None) -> str:
    """``pred_suffix`` if given, else the ISIC submission rule: the ground-truth suffix when
    ``pred_dir`` holds files named like the ground truth (identical names pair), else ``.png``."""
    if pred_suffix is not None:
        return pred_suffix
    if os.path.isdir(pred_dir) and any(n.endswith(gt_suffix) and len(n) > len(gt_suffix)
                                       for n in os.listdir(pred_dir)):
        return gt_suffix
    return ".png"


# ---------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------
def _pairs(spec: FolderScoring) -> List[Tuple]:
    return pair_files(list_masks(spec.gt_dir, spec.gt_suffix, "ground-truth"),
                      list_masks(spec.pred_dir, spec.pred_suffix, "prediction"))


def _binary_counts(spec: FolderScoring) -> Tuple[List[str], torch.Tensor]:
    """Image keys and their confusion counts ``N×4`` (order ``metrics.BINARY_COUNT_ORDER``)."""
    keys, counts = [], []
    for key, gt_file, pred_file in _pairs(spec):
        gt = read_binary(gt_file, spec.threshold)
        pred = read_binary(pred_file, spec.threshold)
        _check_size(gt, pred, gt_file, pred_file)
        counts.append(M.binary_confusion(torch.from_numpy(pred), torch.from_numpy(gt)))
        keys.append(key)
    return keys, torch.stack(counts)


def score_isic_task1(spec: FolderScoring) -> dict:
    """ISIC Task 1 metrics of a prediction folder against its ground truth, plus one row per image."""
    keys, counts = _binary_counts(spec)
    per_image = M.isic_task1_per_image(counts)
    rows = []
    for i, key in enumerate(keys):
        row = {"key": key}
        row.update(dict(zip(M.BINARY_COUNT_ORDER, counts[i].tolist())))
        row.update({k: float(per_image[k][i]) for k in M.ISIC_TASK1_PER_IMAGE_KEYS})
        rows.append(row)
    return {"num_images": len(keys), "results": M.isic_task1_summary(M.isic_task1_statistics(counts)),
            "per_image": rows}


def score_binary_pooled(spec: FolderScoring) -> dict:
    """Binary metrics over the pixels of all images pooled (one confusion for the folder)."""
    keys, counts = _binary_counts(spec)
    pooled = M.pooled_binary_metrics(counts.sum(dim=0))
    return {"num_images": len(keys), "results": {k: float(v) for k, v in pooled.items()}}


def _task2_index(files: Dict[str, str], what: str) -> Dict[Tuple[str, str], str]:
    out = {}
    for key, path in files.items():
        m = TASK2_NAME.match(key)
        if m is None:
            raise MaskFolderError(
                f"{what} file {path} is not named '<image id>_attribute_<attribute><suffix>' "
                "(e.g. ISIC_0000000_attribute_globules.png)"
            )
        out[(m.group("image"), m.group("attribute"))] = path
    return out


def score_isic_task2(spec: FolderScoring) -> dict:
    """ISIC 2018 Task 2 metrics per attribute (each image's counts normalised by its pixel count)."""
    gt = _task2_index(list_masks(spec.gt_dir, spec.gt_suffix, "ground-truth"), "ground-truth")
    pred = _task2_index(list_masks(spec.pred_dir, spec.pred_suffix, "prediction"), "prediction")
    attributes = list(spec.attributes) if spec.attributes else sorted({a for _, a in gt})
    known = {a for _, a in gt}
    absent = [a for a in attributes if a not in known]
    if absent:
        raise MaskFolderError(f"No ground-truth files for attribute(s) {absent} in {spec.gt_dir!r} "
                              f"(found {sorted(known)})")
    gt = {k: v for k, v in gt.items() if k[1] in attributes}
    pred = {k: v for k, v in pred.items() if k[1] in attributes}
    total = torch.zeros(len(attributes), 4, dtype=torch.float64)
    for (image, attribute), gt_file, pred_file in pair_files(gt, pred):
        g = read_binary(gt_file, spec.threshold)
        p = read_binary(pred_file, spec.threshold)
        _check_size(g, p, gt_file, pred_file)
        counts = M.binary_confusion(torch.from_numpy(p), torch.from_numpy(g))
        # official normalisation: each image's counts divided by its pixel count
        total[attributes.index(attribute)] += counts.double() / float(g.size)
    return {"num_images": len({img for img, _ in gt}), "attributes": attributes,
            "results": M.isic_task2_summary(total, attributes)}


def score_sem_seg(spec: FolderScoring) -> dict:
    """Semantic-segmentation metrics (IoU, Dice, accuracy per class) of index-mask folders."""
    if not spec.num_classes:
        raise MaskFolderError("--metric sem_seg needs --num-classes K")
    k = spec.num_classes
    names = list(spec.class_names) if spec.class_names else [str(i) for i in range(k)]
    if len(names) != k:
        raise MaskFolderError(f"--class-names lists {len(names)} names for --num-classes {k}")
    space = LabelSpace(classes=tuple(names), ignore_label=spec.ignore_label,
                       background_is_class=spec.background_is_class, background_index=spec.background_index,
                       mask_encoding="index")
    num_labels = space.num_labels  # value K = background when it is no class
    pairs = _pairs(spec)
    conf = torch.zeros(k + 1, k + 1, dtype=torch.int64)
    for _, gt_file, pred_file in pairs:
        g = read_labels(gt_file, num_labels, spec.ignore_label)
        p = read_labels(pred_file, num_labels, None)
        _check_size(g, p, gt_file, pred_file)
        conf += M.confusion_matrix(torch.from_numpy(p), torch.from_numpy(g), k + 1, spec.ignore_label)
    return {"num_images": len(pairs), "classes": names, "confusion_matrix": conf.tolist(),
            "results": M.sem_seg_summary(conf, space)}


#: ``metric name -> scorer(FolderScoring) -> {"num_images", "results", ...}``
METRICS: Dict[str, Callable[[FolderScoring], dict]] = {
    "isic_task1": score_isic_task1,
    "binary_pooled": score_binary_pooled,
    "isic_task2": score_isic_task2,
    "sem_seg": score_sem_seg,
}


def score_folders(gt_dir: str, pred_dir: str, metric: str, **options) -> dict:
    """Score ``pred_dir`` against ``gt_dir`` with ``metric``; ``options`` are the other fields of
    :class:`FolderScoring`.

    Returns:
        the JSON-able report ``{"metric", "gt_dir", "pred_dir" (absolute), "num_images", "results":
        {metric name: float}, ...}`` plus per metric ``per_image`` rows (isic_task1), ``attributes``
        (isic_task2) or ``classes`` and ``confusion_matrix`` (sem_seg).
    """
    if metric not in METRICS:
        raise MaskFolderError(f"Unknown metric {metric!r}; expected one of {sorted(METRICS)}")
    spec = FolderScoring(gt_dir=gt_dir, pred_dir=pred_dir, metric=metric, **options)
    if spec.gt_suffix is None:
        spec.gt_suffix = DEFAULT_GT_SUFFIX[metric]
    spec.pred_suffix = resolve_pred_suffix(spec.pred_dir, spec.gt_suffix, spec.pred_suffix)
    report = METRICS[metric](spec)
    return {"metric": metric, "gt_dir": os.path.abspath(gt_dir), "pred_dir": os.path.abspath(pred_dir), **report}
