"""Per-image evaluator: every metric computed per image and per class, then averaged over images.

Results under the task key ``"per_image"`` (fractions; HD95 in pixels):

* ``<metric>-<class>``: mean over images of the per-image value, for metric in
  :data:`~skinformer.evaluation.per_image_metrics.PER_IMAGE_KEYS` (Jaccard, Dice, recall,
  specificity, precision, F1, F2, accuracy, smoothed Jaccard) and, with ``roc_auc``, ``auc``;
  ``<metric>``: their mean over classes. Empty images follow ``empty`` (see
  :mod:`~skinformer.evaluation.per_image_metrics`); NaN values (skipped images) are left out.
* Binary data (one class, no background class), SiMaskFormer's polyp set: ``iou_fg``, ``iou_bg``,
  ``iou_mean`` per image averaged, ``boundary_iou`` and ``hd95`` averaged over images, and the
  pooled ``mIoU``, ``fwIoU``, ``mACC``, ``pACC`` of the 2×2 (background, foreground) confusion.

Also writes ``per_image_metrics.csv`` (one row per image and class) into ``output_dir``.
Works for label-map data (``sem_seg_file_name``) and multi-label data (``label_file_names``).
"""
import csv
import logging
import math
import os
from typing import Any, Dict, List, Mapping, Optional, Union

import torch

from skinformer.config import configurable
from skinformer.structures.label_space import LabelSpace
from skinformer.utils import comm

from .build import EVALUATOR_REGISTRY
from .evaluator import DatasetEvaluator
from .ground_truth import GroundTruthLookup, check_scores, read_binary_stack, read_label_map
from .metrics import multilabel_confusion
from .per_image_metrics import (
    PER_IMAGE_KEYS, boundary_iou, confusion_summary, foreground_background_iou, hd95, per_image_roc_auc,
    per_image_scores,
)

__all__ = ["PerImageEvaluator", "per_image"]

logger = logging.getLogger(__name__)


class PerImageEvaluator(DatasetEvaluator):
    """Per-image metrics (Dice, IoU, precision, recall; on binary data also HD95 and boundary IoU;
    optionally ROC-AUC) of each image and class, written as a CSV and summarised as means."""

    @configurable
    def __init__(self, *, label_space: Union[LabelSpace, Mapping[str, Any]], dataset_name: Optional[str] = None,
                 threshold: Optional[float] = None, empty: str = "one", roc_auc: bool = False,
                 output_dir: Optional[str] = None):
        """
        Args:
            label_space: classes of the ``sem_seg`` channels, the background rule, multi-label (ground
                truth is then ``label_file_names`` and each class is thresholded on its own) and
                ground-truth decoding: a :class:`~skinformer.structures.LabelSpace`, or dataset metadata /
                a mapping with at least ``classes`` (defaults applied by ``LabelSpace.from_metadata``).
            threshold: overrides the label space's decision threshold (``TEST.THRESHOLD``).
            empty: empty-image convention, "one" / "skip" / "zero".
            roc_auc: also per-image, per-class ROC-AUC from the scores.
        """
        self._space = LabelSpace.from_metadata(label_space, threshold=threshold)
        self._classes = list(self._space.classes)
        self._multi_label = self._space.multi_label
        self._ignore = self._space.ignore_label
        key = "label_file_names" if self._multi_label else "sem_seg_file_name"
        self._gt = GroundTruthLookup(key, dataset_name, None)
        self._empty = empty
        self._roc_auc = bool(roc_auc)
        self._output_dir = output_dir
        self._binary = self._space.decision == "threshold" and self._space.num_classes == 1
        per_image_scores(torch.zeros(1, 4, dtype=torch.long), empty)  # validates ``empty`` now
        self.reset()

    @classmethod
    def from_config(cls, cfg, dataset_name: str, output_dir: Optional[str] = None) -> Dict[str, Any]:
        """Return the constructor arguments: the dataset's label space (``TEST.THRESHOLD``) and ``TEST.PER_IMAGE.*``."""
        from skinformer.data.catalog import MetadataCatalog

        node = cfg.TEST.PER_IMAGE
        space = LabelSpace.from_metadata(MetadataCatalog.get(dataset_name), threshold=cfg.TEST.THRESHOLD)
        return dict(label_space=space, dataset_name=dataset_name, empty=node.EMPTY, roc_auc=node.ROC_AUC,
                    output_dir=output_dir)

    def reset(self) -> None:
        """Drop the per-image rows and zero the pooled 2×2 (background, foreground) confusion."""
        self._rows: List[Dict[str, Any]] = []  # one per image: name, K×M scores, binary extras
        self._conf = torch.zeros(2, 2, dtype=torch.float64)

    def _decide_and_read(self, inp: dict, scores: torch.Tensor):
        """Predicted and ground-truth bool ``K×H×W`` masks and the valid-pixel map ``H×W``."""
        k, h, w = scores.shape
        if self._multi_label:
            gt = read_binary_stack(list(self._gt(inp)), (h, w), scores.device)
            return self._space.masks_from_scores(scores), gt, torch.ones(h, w, dtype=torch.bool, device=scores.device)
        label = read_label_map(self._gt(inp), self._space, scores.device).long()
        if tuple(label.shape) != (h, w):
            raise ValueError(f"{inp.get('file_name')!r}: prediction {h}×{w} but ground truth {tuple(label.shape)}")
        valid = label != self._ignore
        classes = torch.arange(k, device=scores.device).view(-1, 1, 1)
        pred = self._space.masks_from_scores(scores)
        gt = label.unsqueeze(0) == classes
        return pred & valid, gt & valid, valid

    def process(self, inputs: List[dict], outputs: List[dict]) -> None:
        """Compute each image's ``K×M`` per-class metrics (ignored pixels excluded) and keep them as one row.

        Adds the per-class ROC-AUC with ``roc_auc``; on binary data also the fg/bg/boundary IoU, HD95 and the
        pooled confusion.
        """
        for inp, out in zip(inputs, outputs):
            scores = out["sem_seg"]
            check_scores(scores, inp, self._classes)
            pred, gt, valid = self._decide_and_read(inp, scores)
            counts = multilabel_confusion(pred, gt)
            counts[:, 3] -= int((~valid).sum())  # ignored pixels are neither tp/fp/fn nor tn
            metrics = per_image_scores(counts.cpu(), self._empty)
            table = torch.stack([metrics[m] for m in PER_IMAGE_KEYS], dim=1)  # K×M
            row = {"file_name": inp.get("file_name", str(len(self._rows))), "table": table}
            if self._roc_auc:
                row["auc"] = per_image_roc_auc(torch.where(valid, scores, scores.new_zeros(())), gt)
            if self._binary:
                row.update(foreground_background_iou(counts[0].cpu()))
                row["boundary_iou"] = boundary_iou(pred[0], gt[0])
                row["hd95"] = hd95(pred[0], gt[0])
                tp, fp, fn, tn = (float(x) for x in counts[0])
                self._conf += torch.tensor([[tn, fp], [fn, tp]], dtype=torch.float64)
            self._rows.append(row)

    def evaluate(self) -> Dict[str, Dict[str, float]]:
        """Gather the rows on the main process and return ``{"per_image": metrics}`` (``{}`` elsewhere).

        Per-image values are averaged over images ignoring NaN, then over classes; with ``output_dir`` also
        writes ``per_image_metrics.csv``.
        """
        rows = [r for part in comm.gather(self._rows) for r in part] if comm.get_world_size() > 1 else self._rows
        conf = self._conf
        if comm.get_world_size() > 1:
            conf = sum(comm.gather(self._conf), torch.zeros(2, 2, dtype=torch.float64))
        if not comm.is_main_process():
            return {}
        if not rows:
            logger.warning("[per_image] no images were processed")
            return {"per_image": {}}
        tables = torch.stack([r["table"] for r in rows])  # N×K×M
        per_class = torch.nanmean(tables, dim=0)  # K×M
        res: Dict[str, float] = {}
        for j, m in enumerate(PER_IMAGE_KEYS):
            for c, name in enumerate(self._classes):
                res[f"{m}-{name}"] = float(per_class[c, j])
            res[m] = float(torch.nanmean(per_class[:, j]))
        if self._roc_auc:
            auc = torch.nanmean(torch.stack([r["auc"] for r in rows]), dim=0)
            for c, name in enumerate(self._classes):
                res[f"auc-{name}"] = float(auc[c])
            res["auc"] = float(torch.nanmean(auc))
        if self._binary:
            for m in ("iou_fg", "iou_bg", "iou_mean", "boundary_iou", "hd95"):
                vals = [r[m] for r in rows if not math.isnan(r[m])]
                res[m] = float(sum(vals) / len(vals)) if vals else float("nan")
            res.update(confusion_summary(conf))
        if self._output_dir:
            self._write_csv(rows)
        logger.info(f"[per_image] {len(rows)} images: mean per-image jaccard {res['jaccard']:.4f}, dice {res['dice']:.4f}")
        return {"per_image": res}

    def _write_csv(self, rows) -> None:
        os.makedirs(self._output_dir, exist_ok=True)
        path = os.path.join(self._output_dir, "per_image_metrics.csv")
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["file_name", "class", *PER_IMAGE_KEYS] + (["auc"] if self._roc_auc else []))
            for r in rows:
                for c, name in enumerate(self._classes):
                    extra = [float(r["auc"][c])] if self._roc_auc else []
                    w.writerow([r["file_name"], name, *[f"{float(v):.6f}" for v in r["table"][c]], *extra])
        logger.info(f"[per_image] wrote {path}")


@EVALUATOR_REGISTRY.register()
def per_image(cfg, dataset_name: str, output_dir: Optional[str] = None) -> PerImageEvaluator:
    """``evaluator_type: per_image`` (or ``TEST.PER_IMAGE.ENABLED`` next to the dataset's own) -> :class:`PerImageEvaluator`."""
    return PerImageEvaluator(cfg, dataset_name=dataset_name, output_dir=output_dir)
