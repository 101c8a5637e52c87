"""Semantic segmentation evaluator: a confusion matrix accumulated on the model's device.

Results (fractions in [0, 1], under the task key ``"sem_seg"``): per class ``IoU-``, ``Dice-``,
``Precision-``, ``Recall-<class>``; ``mIoU``, ``mDice``, ``mPrecision``, ``mRecall`` (means over
the dataset's classes, classes absent from ground truth and prediction skipped), ``pACC`` (pixel
accuracy) and ``fwIoU`` over all non-ignored pixels. When background is one of the classes
(Seg-VoFo) ``mIoU_fg`` / ``mDice_fg`` also average the non-background classes; when it is not
(binary lesion data) the "no class" pixels are reported as ``IoU-background`` etc. outside the means.
With ``TEST.ROC_AUC`` each class also gets ``AUC-<class>`` (pooled over all pixels, from a
fixed-bin score histogram) and ``mAUC``.
"""
import json
import logging
import os
from typing import Any, Dict, List, Optional, Sequence

import torch
from tabulate import tabulate

from skinformer.config import configurable
from skinformer.utils import comm

from .build import EVALUATOR_REGISTRY
from .evaluator import DatasetEvaluator, all_reduce_statistics
from .ground_truth import GroundTruthLookup, mask_metadata_kwargs, read_label_map
from .metrics import confusion_matrix, labels_from_scores, roc_auc_from_histograms, score_histograms, sem_seg_summary

__all__ = ["SemSegEvaluator", "check_prediction_size"]

logger = logging.getLogger(__name__)


def check_prediction_size(pred_hw, input_dict: dict, what: str = "sem_seg") -> None:
    """Predictions must be at the original resolution (``height``, ``width`` of the input dict)."""
    h, w = input_dict.get("height"), input_dict.get("width")
    if h is not None and w is not None and tuple(pred_hw) != (int(h), int(w)):
        raise ValueError(
            f"'{what}' output for {input_dict.get('file_name')!r} is {pred_hw[0]}×{pred_hw[1]} but the image is "
            f"{h}×{w}: models must return predictions at the original resolution (height, width)"
        )


class SemSegEvaluator(DatasetEvaluator):
    """(K+1)² confusion matrix of the decision-rule labels vs the ground-truth label map.

    Bin ``K`` is "background, no class" (used when ``has_background_class`` is False). Ground truth
    is read from ``sem_seg_file_name`` at the original resolution with the dataset's mask encoding.
    """

    @configurable
    def __init__(self, *, classes: Sequence[str], ignore_label: int = 255, has_background_class: bool = False,
                 background_index: int = 0, mask_encoding: str = "binary", gray_values: Optional[dict] = None,
                 mat_key: str = "smgt", dataset_name: Optional[str] = None, gt_table: Optional[Dict[str, str]] = None,
                 threshold: float = 0.5, roc_auc: bool = False, roc_auc_bins: int = 1000,
                 output_dir: Optional[str] = None, device: str = "cpu", task_name: str = "sem_seg"):
        """
        Args:
            classes: class names (``len == K`` = the number of ``sem_seg`` channels).
            ignore_label / has_background_class / mask_encoding / gray_values / mat_key: how the
                ground-truth files are decoded (dataset metadata, see ``skinformer.data.mask_io``).
            background_index: the background class when ``has_background_class`` (for ``*_fg`` means).
            dataset_name / gt_table: where to find ``sem_seg_file_name`` when the input dicts lack it.
            threshold: decision threshold when background is not a class.
            roc_auc, roc_auc_bins: also compute per-class ROC-AUC from a ``roc_auc_bins`` histogram.
            output_dir: if set, ``sem_seg_evaluation.json`` (results + confusion matrix) is written there.
            device: where statistics are reduced across processes (``cfg.MODEL.DEVICE``).
        """
        self._classes = list(classes)
        self._num_classes = len(self._classes)
        self._ignore = ignore_label
        self._has_bg = has_background_class
        self._bg_index = background_index
        self._mask_meta = {
            "classes": self._classes, "ignore_label": ignore_label, "has_background_class": has_background_class,
            "mask_encoding": mask_encoding, "gray_values": gray_values, "mat_key": mat_key,
        }
        self._gt = GroundTruthLookup("sem_seg_file_name", dataset_name, gt_table)
        self._threshold = threshold
        self._roc_auc = roc_auc
        self._roc_bins = roc_auc_bins
        self._output_dir = output_dir
        self._device = torch.device(device)
        self._task = task_name
        self.reset()

    @classmethod
    def from_config(cls, cfg, dataset_name: str, output_dir: Optional[str] = None) -> Dict[str, Any]:
        from skinformer.data.catalog import MetadataCatalog

        meta = MetadataCatalog.get(dataset_name)
        return dict(
            mask_metadata_kwargs(meta), dataset_name=dataset_name, roc_auc=cfg.TEST.ROC_AUC,
            output_dir=output_dir, device=cfg.MODEL.DEVICE,
        )

    def reset(self) -> None:
        self._conf: Optional[torch.Tensor] = None
        self._hist: Optional[torch.Tensor] = None
        self._num_images = 0

    def process(self, inputs: List[dict], outputs: List[dict]) -> None:
        for inp, out in zip(inputs, outputs):
            scores = out["sem_seg"]
            if scores.dim() != 3 or scores.shape[0] != self._num_classes:
                raise ValueError(
                    f"'sem_seg' output for {inp.get('file_name')!r} has shape {tuple(scores.shape)}; expected "
                    f"{self._num_classes}×H×W for classes {self._classes}"
                )
            check_prediction_size(scores.shape[1:], inp)
            gt_file = self._gt(inp)
            gt = read_label_map(gt_file, self._mask_meta, scores.device)
            if gt.shape != scores.shape[1:]:
                raise ValueError(
                    f"Ground truth {gt_file} is {gt.shape[0]}×{gt.shape[1]} but the prediction for "
                    f"{inp.get('file_name')!r} is {scores.shape[1]}×{scores.shape[2]}"
                )
            pred = labels_from_scores(scores, self._has_bg, self._threshold)
            conf = confusion_matrix(pred, gt, self._num_classes + 1, self._ignore)
            self._conf = conf if self._conf is None else self._conf + conf
            if self._roc_auc:
                hist = score_histograms(scores, gt, self._ignore, self._roc_bins)
                self._hist = hist if self._hist is None else self._hist + hist
            self._num_images += 1

    def evaluate(self) -> Dict[str, Dict[str, float]]:
        n = self._num_classes + 1
        conf = self._conf if self._conf is not None else torch.zeros(n, n, dtype=torch.int64, device=self._device)
        conf = all_reduce_statistics(conf, self._device)
        num_images = int(all_reduce_statistics(torch.tensor([self._num_images], device=self._device), self._device))
        auc = None
        if self._roc_auc:
            hist = self._hist if self._hist is not None else torch.zeros(
                self._num_classes, 2, self._roc_bins, dtype=torch.int64, device=self._device)
            auc = roc_auc_from_histograms(all_reduce_statistics(hist, self._device))
        if not comm.is_main_process():
            return {}
        if num_images == 0:
            logger.warning(f"[{self._task}] no images were processed; all metrics are NaN")
        results = sem_seg_summary(conf.cpu(), self._classes, self._has_bg, self._bg_index, auc)
        self._log(results, num_images)
        if self._output_dir:
            os.makedirs(self._output_dir, exist_ok=True)
            with open(os.path.join(self._output_dir, f"{self._task}_evaluation.json"), "w") as f:
                json.dump({"results": results, "num_images": num_images, "classes": self._classes,
                           "confusion_matrix": conf.cpu().tolist()}, f, indent=1)
        return {self._task: results}

    def _log(self, results: Dict[str, float], num_images: int) -> None:
        names = self._classes + ([] if self._has_bg else ["background"])
        keys = ["IoU", "Dice", "Precision", "Recall"] + (["AUC"] if self._roc_auc else [])
        rows = [[name] + [results.get(f"{k}-{name}", float("nan")) for k in keys] for name in names]
        logger.info(f"[{self._task}] per-class results on {num_images} images:\n"
                    + tabulate(rows, headers=["class"] + keys, tablefmt="pipe", floatfmt=".4f"))


@EVALUATOR_REGISTRY.register()
def sem_seg(dataset_name: str, cfg, output_dir: Optional[str] = None) -> SemSegEvaluator:
    """``evaluator_type: sem_seg`` -> :class:`SemSegEvaluator`."""
    return SemSegEvaluator(cfg, dataset_name=dataset_name, output_dir=output_dir)
