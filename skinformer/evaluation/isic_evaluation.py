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
from typing import Any, Dict, List, Optional, Sequence

import torch

from skinformer.config import configurable
from skinformer.data import mask_io
from skinformer.utils import comm

from .build import EVALUATOR_REGISTRY
from .evaluator import DatasetEvaluator, all_reduce_statistics
from .ground_truth import GroundTruthLookup, mask_metadata_kwargs, read_label_map
from .metrics import (ISIC_TASK1_PER_IMAGE_KEYS, binary_confusion, foreground_from_scores, isic_task1_per_image,
                      isic_task1_statistics, isic_task1_summary)
from .sem_seg_evaluation import check_prediction_size

__all__ = ["ISICTask1Evaluator"]

logger = logging.getLogger(__name__)


class ISICTask1Evaluator(DatasetEvaluator):
    """Per-image binary confusion counts of foreground (any class) vs ground-truth foreground.

    Foreground of the prediction follows the decision rule (``max_c score > 0.5`` without a
    background class, ``argmax != background_index`` with one); foreground of the ground truth is
    every non-ignored pixel labelled with a lesion class.
    """

    @configurable
    def __init__(self, *, classes: Sequence[str], ignore_label: int = 255, has_background_class: bool = False,
                 background_index: int = 0, mask_encoding: str = "binary", gray_values: Optional[dict] = None,
                 mat_key: str = "smgt", dataset_name: Optional[str] = None, gt_table: Optional[Dict[str, str]] = None,
                 threshold: float = 0.5, output_dir: Optional[str] = None, device: str = "cpu",
                 task_name: str = "isic_task1"):
        """
        Args:
            classes: class names of the ``sem_seg`` channels (``["lesion"]`` for binary data).
            ignore_label / has_background_class / mask_encoding / gray_values / mat_key: decoding
                of the ground-truth files (dataset metadata; see ``skinformer.data.mask_io``).
            background_index: the background class when ``has_background_class``.
            dataset_name / gt_table: where to find ``sem_seg_file_name`` when the inputs lack it.
            threshold: decision threshold on the scores (contract: 0.5).
            output_dir: if set, per-image counts and metrics are written to ``<task>_per_image.csv``
                (the only case where per-image data is gathered across processes).
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
        self._output_dir = output_dir
        self._device = torch.device(device)
        self._task = task_name
        self.reset()

    @classmethod
    def from_config(cls, cfg, dataset_name: str, output_dir: Optional[str] = None) -> Dict[str, Any]:
        from skinformer.data.catalog import MetadataCatalog

        meta = MetadataCatalog.get(dataset_name)
        return dict(mask_metadata_kwargs(meta), dataset_name=dataset_name, output_dir=output_dir,
                    device=cfg.MODEL.DEVICE)

    def reset(self) -> None:
        self._counts: List[torch.Tensor] = []  # one int64 [tp, fp, fn, tn] per image, on the outputs' device
        self._image_ids: List[Any] = []

    def _read_gt_foreground(self, gt_file: str, device: torch.device):
        """Ground-truth foreground (bool H×W) and valid mask (None when nothing is ignored)."""
        if self._mask_meta["mask_encoding"] == "binary":
            # binary files hold no ignore pixels: decode straight to a bool foreground, skipping the
            # int64 label map read_sem_seg would build (same result, less memory traffic)
            fg = mask_io.decode_binary(mask_io.read_mask_array(gt_file), gt_file)
            return torch.from_numpy(fg).to(device, non_blocking=True), None
        gt = read_label_map(gt_file, self._mask_meta, device)
        valid = gt != self._ignore
        if self._has_bg:
            fg = (gt != self._bg_index) & valid
        else:
            fg = (gt >= 0) & (gt < self._num_classes) & valid
        return fg, valid

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
            gt_fg, valid = self._read_gt_foreground(gt_file, scores.device)
            if gt_fg.shape != scores.shape[1:]:
                raise ValueError(
                    f"Ground truth {gt_file} is {gt_fg.shape[0]}×{gt_fg.shape[1]} but the prediction for "
                    f"{inp.get('file_name')!r} is {scores.shape[1]}×{scores.shape[2]}"
                )
            pred_fg = foreground_from_scores(scores, self._has_bg, self._threshold, self._bg_index)
            self._counts.append(binary_confusion(pred_fg, gt_fg, valid))
            self._image_ids.append(inp.get("image_id", inp.get("file_name")))

    def _local_counts(self) -> torch.Tensor:
        if not self._counts:
            return torch.zeros(0, 4, dtype=torch.int64, device=self._device)
        return torch.stack(self._counts)

    def evaluate(self) -> Dict[str, Dict[str, float]]:
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
def isic_task1(dataset_name: str, cfg, output_dir: Optional[str] = None) -> ISICTask1Evaluator:
    """``evaluator_type: isic_task1`` -> :class:`ISICTask1Evaluator` (official + pooled metrics)."""
    return ISICTask1Evaluator(cfg, dataset_name=dataset_name, output_dir=output_dir)


@EVALUATOR_REGISTRY.register()
def binary(dataset_name: str, cfg, output_dir: Optional[str] = None) -> ISICTask1Evaluator:
    """``evaluator_type: binary`` (any binary lesion/polyp data): the same evaluator and metrics,
    reported under the task key ``"binary"`` (``pooled_*`` are the pooled pixel metrics)."""
    return ISICTask1Evaluator(cfg, dataset_name=dataset_name, output_dir=output_dir, task_name="binary")
