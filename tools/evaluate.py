#!/usr/bin/env python
"""Score a folder of predicted masks against a folder of ground-truth masks.

    python tools/evaluate.py --gt-dir GT --pred-dir PRED --metric isic_task1 --output result.json

Metrics (formulas shared with the in-training evaluators, ``skinformer/evaluation/metrics.py``):

* ``isic_task1``: official ISIC 2018 Task 1 (per-image Jaccard, thresholded Jaccard, Dice,
  sensitivity, specificity, accuracy, averaged over images) plus the pooled ``pooled_*`` metrics.
* ``binary_pooled``: only the pooled pixel metrics (precision, recall, accuracy, Dice, IoU over all
  pixels of all images; skin_segmentor's evaluate.py).
* ``isic_task2``: official ISIC 2018 Task 2 (per-image normalised counts; per-attribute and micro
  Jaccard / Dice). Files are named ``<image id>_attribute_<attribute><suffix>``, e.g.
  ``ISIC_0000000_attribute_globules.png``, and are matched by image id + attribute.
* ``sem_seg``: index masks (``0..K-1`` classes, ``K`` = background when background is not a class,
  ``--ignore-label`` ignored) -> per-class IoU / Dice / precision / recall, mIoU, mDice, pACC, fwIoU.

Matching: a file's key is its name without ``--gt-suffix`` / ``--pred-suffix``; only files ending
with the suffix are considered. Without ``--pred-suffix``, predictions named exactly like the
ground truth (the ISIC submission name ``ISIC_xxxxxxx_segmentation.png``) pair by name; otherwise
the prediction suffix is ``.png`` (``ISIC_xxxxxxx.png``). Every ground-truth file needs exactly one prediction and vice versa,
and both must have the same size (the official rule: predictions at the original resolution).
Binary masks are binarised at ``value > --threshold`` (default 127, i.e. >= 128 like
``skinformer.data.mask_io``; the official ISIC scorer uses > 128, which only differs for the value
128), or ``> 0`` for 0/1 masks; colour masks by their brightest channel (a red lesion is
foreground). Masks holding small label values (e.g. {0, 1, 2}) are an error naming the file. Problems are reported naming the files; the exit status is then 2.
"""
import argparse
import json
import os
import re
import sys
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from tabulate import tabulate

from skinformer.data import mask_io
from skinformer.evaluation import metrics as M
from skinformer.structures.label_space import LabelSpace


TASK2_NAME = re.compile(r"^(?P<image>.+?)_attribute_(?P<attribute>.+)$")
DEFAULT_GT_SUFFIX = {"isic_task1": "_segmentation.png", "binary_pooled": "_segmentation.png",
                     "isic_task2": ".png", "sem_seg": ".png"}


class MaskFolderError(ValueError):
    """Folders that cannot be scored: unmatched files, size mismatches, bad values."""


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------
def list_masks(folder: str, suffix: str, what: str) -> Dict[str, str]:
    """``{key: path}`` for the files in ``folder`` whose name ends with ``suffix`` (key = name minus suffix)."""
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
    """Bool mask (:func:`skinformer.data.mask_io.decode_binary`): ``value > threshold``, ``> 0`` for
    0/1 masks, brightest channel of colour masks; label maps such as {0, 1, 2} are an error."""
    return mask_io.read_binary_mask(file_name, threshold)


def read_labels(file_name: str, num_bins: int, ignore_label: Optional[int]) -> np.ndarray:
    """Index mask with values in ``0..num_bins-1`` (or ``ignore_label`` when given) as int64."""
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


# ---------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------
def resolve_pred_suffix(args) -> str:
    """``--pred-suffix``, or by default: the ground-truth suffix when the prediction folder holds
    files named like the ground truth (identical names pair), else ``.png``."""
    if args.pred_suffix is not None:
        return args.pred_suffix
    if os.path.isdir(args.pred_dir) and any(n.endswith(args.gt_suffix) and len(n) > len(args.gt_suffix)
                                            for n in os.listdir(args.pred_dir)):
        return args.gt_suffix
    return ".png"


def _binary_counts(args) -> Tuple[List[str], torch.Tensor]:
    pairs = pair_files(list_masks(args.gt_dir, args.gt_suffix, "ground-truth"),
                       list_masks(args.pred_dir, args.pred_suffix, "prediction"))
    keys, counts = [], []
    for key, gt_file, pred_file in pairs:
        gt = read_binary(gt_file, args.threshold)
        pred = read_binary(pred_file, args.threshold)
        _check_size(gt, pred, gt_file, pred_file)
        counts.append(M.binary_confusion(torch.from_numpy(pred), torch.from_numpy(gt)))
        keys.append(key)
    return keys, torch.stack(counts)


def score_isic_task1(args) -> dict:
    keys, counts = _binary_counts(args)
    per_image = M.isic_task1_per_image(counts)
    rows = []
    for i, key in enumerate(keys):
        row = {"key": key}
        row.update(dict(zip(M.BINARY_COUNT_ORDER, counts[i].tolist())))
        row.update({k: float(per_image[k][i]) for k in M.ISIC_TASK1_PER_IMAGE_KEYS})
        rows.append(row)
    return {"num_images": len(keys), "results": M.isic_task1_summary(M.isic_task1_statistics(counts)),
            "per_image": rows}


def score_binary_pooled(args) -> dict:
    keys, counts = _binary_counts(args)
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


def score_isic_task2(args) -> dict:
    gt = _task2_index(list_masks(args.gt_dir, args.gt_suffix, "ground-truth"), "ground-truth")
    pred = _task2_index(list_masks(args.pred_dir, args.pred_suffix, "prediction"), "prediction")
    attributes = list(args.attributes) if args.attributes else sorted({a for _, a in gt})
    known = {a for _, a in gt}
    absent = [a for a in attributes if a not in known]
    if absent:
        raise MaskFolderError(f"No ground-truth files for attribute(s) {absent} in {args.gt_dir!r} (found {sorted(known)})")
    gt = {k: v for k, v in gt.items() if k[1] in attributes}
    pred = {k: v for k, v in pred.items() if k[1] in attributes}
    total = torch.zeros(len(attributes), 4, dtype=torch.float64)
    for (image, attribute), gt_file, pred_file in pair_files(gt, pred):
        g = read_binary(gt_file, args.threshold)
        p = read_binary(pred_file, args.threshold)
        _check_size(g, p, gt_file, pred_file)
        counts = M.binary_confusion(torch.from_numpy(p), torch.from_numpy(g))
        # official normalisation: each image's counts divided by its pixel count
        total[attributes.index(attribute)] += counts.double() / float(g.size)
    return {"num_images": len({img for img, _ in gt}), "attributes": attributes,
            "results": M.isic_task2_summary(total, attributes)}


def score_sem_seg(args) -> dict:
    if not args.num_classes:
        raise MaskFolderError("--metric sem_seg needs --num-classes K")
    k = args.num_classes
    names = list(args.class_names) if args.class_names else [str(i) for i in range(k)]
    if len(names) != k:
        raise MaskFolderError(f"--class-names lists {len(names)} names for --num-classes {k}")
    space = LabelSpace(classes=tuple(names), ignore_label=args.ignore_label, background_is_class=args.background_is_class,
                       background_index=args.background_index, mask_encoding="index")
    num_labels = space.num_labels  # value K = background when it is no class
    pairs = pair_files(list_masks(args.gt_dir, args.gt_suffix, "ground-truth"),
                       list_masks(args.pred_dir, args.pred_suffix, "prediction"))
    conf = torch.zeros(k + 1, k + 1, dtype=torch.int64)
    for _, gt_file, pred_file in pairs:
        g = read_labels(gt_file, num_labels, args.ignore_label)
        p = read_labels(pred_file, num_labels, None)
        _check_size(g, p, gt_file, pred_file)
        conf += M.confusion_matrix(torch.from_numpy(p), torch.from_numpy(g), k + 1, args.ignore_label)
    return {"num_images": len(pairs), "classes": names, "confusion_matrix": conf.tolist(),
            "results": M.sem_seg_summary(conf, names, space.background_is_class, space.background_index)}


METRICS: Dict[str, Callable] = {
    "isic_task1": score_isic_task1,
    "binary_pooled": score_binary_pooled,
    "isic_task2": score_isic_task2,
    "sem_seg": score_sem_seg,
}


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gt-dir", required=True, help="folder of ground-truth masks")
    p.add_argument("--pred-dir", required=True, help="folder of predicted masks")
    p.add_argument("--metric", required=True, choices=sorted(METRICS))
    p.add_argument("--output", default=None, help="write the results as JSON here")
    p.add_argument("--gt-suffix", default=None,
                   help="ground-truth file name ending removed to get the key (default: " +
                        ", ".join(f"{k}: {v!r}" for k, v in DEFAULT_GT_SUFFIX.items()) + ")")
    p.add_argument("--pred-suffix", default=None,
                   help="prediction file name ending removed to get the key (default: the ground-truth "
                        "suffix when predictions carry the ground-truth names, else '.png')")
    p.add_argument("--threshold", type=float, default=127,
                   help="binary masks: foreground is value > threshold (0/1 masks: > 0); official ISIC uses 128")
    p.add_argument("--attributes", nargs="+", default=None, help="isic_task2: attributes to score, in this order")
    p.add_argument("--num-classes", type=int, default=None, help="sem_seg: number of classes K")
    p.add_argument("--class-names", nargs="+", default=None, help="sem_seg: K class names")
    p.add_argument("--ignore-label", type=int, default=255, help="sem_seg: ground-truth label that is ignored")
    p.add_argument("--has-background-class", dest="background_is_class", action="store_true",
                   help="sem_seg: background is one of the K classes (else label K = background)")
    p.add_argument("--background-index", type=int, default=0, help="sem_seg: the background class for *_fg means")
    return p


def run(args) -> dict:
    """Score the folders described by parsed ``args``; returns the JSON-able report."""
    if args.gt_suffix is None:
        args.gt_suffix = DEFAULT_GT_SUFFIX[args.metric]
    args.pred_suffix = resolve_pred_suffix(args)
    report = METRICS[args.metric](args)
    report = {"metric": args.metric, "gt_dir": os.path.abspath(args.gt_dir),
              "pred_dir": os.path.abspath(args.pred_dir), **report}
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with open(args.output, "w") as f:
            json.dump(report, f, indent=1)
    return report


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        report = run(args)
    except (MaskFolderError, mask_io.DataFileError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    rows = [[k, v] for k, v in report["results"].items()]
    print(f"{args.metric}: {report['num_images']} images ({args.gt_dir} vs {args.pred_dir})")
    print(tabulate(rows, headers=["metric", "value"], tablefmt="pipe", floatfmt=".4f"))
    if args.output:
        print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
