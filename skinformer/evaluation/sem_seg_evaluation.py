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
from typing import Any, Dict, List, Optional

import torch
from tabulate import tabulate

from skinformer.config import configurable
from skinformer.utils import comm

from .build import EVALUATOR_REGISTRY
from .evaluator import all_reduce_statistics
from .ground_truth import LabelMapEvaluator, check_prediction_size, read_label_map
from .metrics import confusion_matrix, roc_auc_from_histograms, score_histograms, sem_seg_summary

__all__ = ["SemSegEvaluator", "check_prediction_size"]

logger = logging.getLogger(__name__)


class SemSegEvaluator(LabelMapEvaluator):
    """(K+1)² confusion matrix of the decision-rule labels vs the ground-truth label map.

    Bin ``K`` is "background, no class" (used when background is not a class). Ground truth
    is read from ``sem_seg_file_name`` at the original resolution with the dataset's mask encoding.
    """

    @configurable
    def __init__(self, *, roc_auc: bool = False, roc_auc_bins: int = 1000, task_name: str = "sem_seg", **kwargs):
        """
        Args:
            roc_auc, roc_auc_bins: also compute per-class ROC-AUC from a ``roc_auc_bins`` histogram.
            task_name: key of the results.
            kwargs: the ground-truth and decision arguments of
                :class:`~skinformer.evaluation.ground_truth.LabelMapEvaluator` (``label_space``, whose
                background class is left out of the ``*_fg`` means, ``dataset_name``, ``gt_table``,
                ``threshold``, ``device``, ``resize_to_gt``). With ``output_dir``,
                ``sem_seg_evaluation.json`` (results + confusion matrix) is written there.
        """
        self._roc_auc = roc_auc
        self._roc_bins = roc_auc_bins
        super().__init__(task_name=task_name, **kwargs)

    @classmethod
    def from_config(cls, cfg, dataset_name: str, output_dir: Optional[str] = None) -> Dict[str, Any]:
        """Return :meth:`LabelMapEvaluator.from_config`'s arguments plus ``roc_auc`` (``TEST.ROC_AUC``)."""
        return dict(super().from_config(cfg, dataset_name, output_dir), roc_auc=cfg.TEST.ROC_AUC)

    def reset(self) -> None:
        """Drop the accumulated confusion matrix, score histograms and image count."""
        self._conf: Optional[torch.Tensor] = None
        self._hist: Optional[torch.Tensor] = None
        self._num_images = 0

    def process(self, inputs: List[dict], outputs: List[dict]) -> None:
        """Add each image's ``(K+1)×(K+1)`` confusion of decision-rule labels vs its ground-truth label map.

        Ignored pixels are left out; with ``roc_auc`` the per-class score histograms are accumulated too.
        """
        for inp, out in zip(inputs, outputs):
            scores, gt_file = self._scores_and_gt_file(inp, out)
            gt = read_label_map(gt_file, self._space, scores.device)
            scores = self._scores_at_gt_size(gt.shape, gt_file, inp, scores)
            pred = self._space.labels_from_scores(scores)
            conf = confusion_matrix(pred, gt, self._num_classes + 1, self._ignore)
            self._conf = conf if self._conf is None else self._conf + conf
            if self._roc_auc:
                hist = score_histograms(scores, gt, self._ignore, self._roc_bins)
                self._hist = hist if self._hist is None else self._hist + hist
            self._num_images += 1

    def evaluate(self) -> Dict[str, Dict[str, float]]:
        """Sum the statistics over processes and return ``{task_name: metrics}`` on the main process (``{}`` elsewhere).

        Logs a per-class table; with ``output_dir`` also writes ``<task_name>_evaluation.json`` (results and
        confusion matrix).
        """
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
        results = sem_seg_summary(conf.cpu(), self._space, auc)
        self._log(results, num_images)
        if self._output_dir:
            os.makedirs(self._output_dir, exist_ok=True)
            with open(os.path.join(self._output_dir, f"{self._task}_evaluation.json"), "w") as f:
                json.dump({"results": results, "num_images": num_images, "classes": self._classes,
                           "confusion_matrix": conf.cpu().tolist()}, f, indent=1)
        return {self._task: results}

    def _log(self, results: Dict[str, float], num_images: int) -> None:
        names = self._classes + ([] if self._space.background_is_class else ["background"])
        keys = ["IoU", "Dice", "Precision", "Recall"] + (["AUC"] if self._roc_auc else [])
        rows = [[name] + [results.get(f"{k}-{name}", float("nan")) for k in keys] for name in names]
        logger.info(f"[{self._task}] per-class results on {num_images} images:\n"
                    + tabulate(rows, headers=["class"] + keys, tablefmt="pipe", floatfmt=".4f"))


@EVALUATOR_REGISTRY.register()
def sem_seg(cfg, dataset_name: str, output_dir: Optional[str] = None) -> SemSegEvaluator:
    """``evaluator_type: sem_seg`` -> :class:`SemSegEvaluator`."""
    return SemSegEvaluator(cfg, dataset_name=dataset_name, output_dir=output_dir)
