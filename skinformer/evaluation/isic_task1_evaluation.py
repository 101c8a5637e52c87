"""ISIC 2018 Task 1 evaluator (binary lesion / polyp segmentation), scored at the original resolution.

Results under the task key ``"isic_task1"`` (fractions in [0, 1]):

* the official ISIC 2018 Task 1 metrics (ImageMarkup/isic-challenge-scoring): per image
  ``jaccard``, ``threshold_jaccard`` (0 when the Jaccard is below 0.65), ``dice``, ``sensitivity``,
  ``specificity``, ``accuracy`` -- empty denominators count 1 -- each averaged over images. The
  ranking score is ``threshold_jaccard``.
* the pooled pixel metrics (TP/FP/FN/TN summed over every pixel of every image):
  ``pooled_precision``, ``pooled_recall``, ``pooled_accuracy``, ``pooled_dice``, ``pooled_iou``
  (empty denominators count 0), as the skin_segmentor and Kvasir-style reports use them.

Unlike the SiMaskFormer evaluators, scores are *not* min-max normalised per image and an empty
true-positive count is *not* replaced by 1: the model's ``sem_seg`` probabilities go through the
contract's decision rule (``> 0.5``) unchanged.

Statistics crossing processes: one float64 vector of per-image-metric sums and pooled counts
(:func:`skinformer.evaluation.metrics.isic_task1_statistics`).
"""
import csv
import logging
import os
from typing import Any, Dict, List, Optional

import torch

from skinformer.config import configurable
from skinformer.utils import comm

from .build import EVALUATOR_REGISTRY
from .evaluator import all_reduce_statistics
from .ground_truth import LabelMapEvaluator, read_foreground
from .metrics import (ISIC_TASK1_PER_IMAGE_KEYS, binary_confusion, isic_task1_per_image,
                      isic_task1_statistics, isic_task1_summary)

__all__ = ["ISICTask1Evaluator"]

logger = logging.getLogger(__name__)


class ISICTask1Evaluator(LabelMapEvaluator):
    """Per-image binary confusion counts of foreground (any class) vs ground-truth foreground.

    Foreground of the prediction follows the label space's decision rule
    (:meth:`~skinformer.structures.LabelSpace.foreground`); foreground of the ground truth is
    every non-ignored pixel labelled with a lesion class.
    """

    @configurable
    def __init__(self, *, task_name: str = "isic_task1", **kwargs):
        """
        Args:
            task_name: key of the results (``"binary"`` for the ``binary`` evaluator type).
            kwargs: the ground-truth and decision arguments of
                :class:`~skinformer.evaluation.ground_truth.LabelMapEvaluator` (``label_space``,
                ``dataset_name``, ``gt_table``, ``threshold``, ``device``, ``resize_to_gt``).
                With ``output_dir``, per-image counts and metrics are written to
                ``<task>_per_image.csv`` (the only case where per-image data is gathered across processes).
        """
        super().__init__(task_name=task_name, **kwargs)

    def reset(self) -> None:
        """Drop the per-image confusion counts and image ids collected so far."""
        self._counts: List[torch.Tensor] = []  # one int64 [tp, fp, fn, tn] per image, on the outputs' device
        self._image_ids: List[Any] = []

    def process(self, inputs: List[dict], outputs: List[dict]) -> None:
        """Store each image's ``[tp, fp, fn, tn]`` pixel counts of predicted vs ground-truth foreground.

        Scores (``K×H×W``) are checked and, with ``resize_to_gt``, resized to the ground truth's size first.
        """
        for inp, out in zip(inputs, outputs):
            scores, gt_file = self._scores_and_gt_file(inp, out)
            gt_fg, valid = read_foreground(gt_file, self._space, scores.device)
            scores = self._scores_at_gt_size(gt_fg.shape, gt_file, inp, scores)
            pred_fg = self._space.foreground(scores)
            self._counts.append(binary_confusion(pred_fg, gt_fg, valid))
            self._image_ids.append(inp.get("image_id", inp.get("file_name")))

    def _local_counts(self) -> torch.Tensor:
        if not self._counts:
            return torch.zeros(0, 4, dtype=torch.int64, device=self._device)
        return torch.stack(self._counts)

    def evaluate(self) -> Dict[str, Dict[str, float]]:
        """Sum the statistics over processes and return ``{task_name: metrics}`` on the main process (``{}`` elsewhere).

        Metrics: the per-image means and the pooled pixel metrics. With ``output_dir``, also writes
        ``<task_name>_per_image.csv``.
        """
        counts = self._local_counts()
        stats = all_reduce_statistics(isic_task1_statistics(counts), self._device)
        if self._output_dir:
            self._write_per_image(counts)
        if not comm.is_main_process():
            return {}
        num_images = int(stats[len(ISIC_TASK1_PER_IMAGE_KEYS)])
        if num_images == 0:
            logger.warning(f"[{self._task}] no images were processed; the per-image means are NaN")
        results = isic_task1_summary(stats)
        logger.info(f"[{self._task}] {num_images} images: threshold_jaccard {results['threshold_jaccard']:.4f}, "
                    f"jaccard {results['jaccard']:.4f}, dice {results['dice']:.4f}, "
                    f"pooled_iou {results['pooled_iou']:.4f}")
        return {self._task: results}

    def _write_per_image(self, counts: torch.Tensor) -> None:
        # Per-image rows are small (4 ints); they are only gathered because a file was asked for.
        gathered = comm.gather((self._image_ids, counts.cpu()))
        if not comm.is_main_process():
            return
        ids = [i for g in gathered for i in g[0]]
        all_counts = torch.cat([g[1] for g in gathered]) if gathered else torch.zeros(0, 4, dtype=torch.int64)
        per_image = isic_task1_per_image(all_counts)
        os.makedirs(self._output_dir, exist_ok=True)
        path = os.path.join(self._output_dir, f"{self._task}_per_image.csv")
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["image_id", "tp", "fp", "fn", "tn", *ISIC_TASK1_PER_IMAGE_KEYS])
            for j, image_id in enumerate(ids):
                w.writerow([image_id, *all_counts[j].tolist(),
                            *(f"{float(per_image[k][j]):.6f}" for k in ISIC_TASK1_PER_IMAGE_KEYS)])
        logger.info(f"[{self._task}] per-image results written to {path}")


@EVALUATOR_REGISTRY.register()
def isic_task1(cfg, dataset_name: str, output_dir: Optional[str] = None) -> ISICTask1Evaluator:
    """``evaluator_type: isic_task1`` -> :class:`ISICTask1Evaluator` (official + pooled metrics)."""
    return ISICTask1Evaluator(cfg, dataset_name=dataset_name, output_dir=output_dir)


@EVALUATOR_REGISTRY.register()
def binary(cfg, dataset_name: str, output_dir: Optional[str] = None) -> ISICTask1Evaluator:
    """``evaluator_type: binary`` (any binary lesion/polyp data): the same evaluator and metrics,
    reported under the task key ``"binary"`` (``pooled_*`` are the pooled pixel metrics)."""
    return ISICTask1Evaluator(cfg, dataset_name=dataset_name, output_dir=output_dir, task_name="binary")
