"""ISIC 2018 Task 2 evaluator (lesion attributes, multi-label), scored at the original resolution.

Official definition (ImageMarkup/isic-challenge-scoring ``task2.score``): for every (attribute,
image) pair a binary confusion matrix is computed and divided by the image's pixel count, so every
image weighs the same whatever its resolution; the normalised matrices are summed over images.
Per attribute ``jaccard-<a>`` = TP/(TP+FP+FN) and ``dice-<a>`` = 2TP/(2TP+FP+FN), both 1.0 when
the attribute is absent everywhere and never predicted. ``jaccard_micro`` (the ranking score) and
``dice_micro`` sum the matrices over all attributes too; ``jaccard_mean`` / ``dice_mean`` average
the per-attribute values (what several papers report instead). No 0.65 threshold in Task 2.

Model outputs: ``{"sem_seg": K×H×W}`` scores, each attribute thresholded on its own at ``TEST.THRESHOLD`` (0.5).
Ground truth: ``label_file_names`` (one binary mask file per attribute, in ``classes`` order;
``None`` = an empty mask). Results are under the task key ``"isic_task2"``.
"""
import logging
from typing import Any, Dict, List, Optional, Sequence

import torch

from skinformer.config import configurable
from skinformer.utils import comm

from .build import EVALUATOR_REGISTRY
from .evaluator import DatasetEvaluator, all_reduce_statistics
from .ground_truth import GroundTruthLookup, check_scores, read_binary_stack
from skinformer.structures.label_space import LabelSpace

from .metrics import isic_task2_summary, multilabel_confusion

__all__ = ["ISICTask2Evaluator"]

logger = logging.getLogger(__name__)


class ISICTask2Evaluator(DatasetEvaluator):
    """Sum over images of per-attribute confusion counts normalised by the image's pixel count."""

    @configurable
    def __init__(self, *, classes: Sequence[str], dataset_name: Optional[str] = None,
                 gt_table: Optional[Dict[str, List[Optional[str]]]] = None, threshold: float = 0.5,
                 output_dir: Optional[str] = None, device: str = "cpu", task_name: str = "isic_task2"):
        """
        Args:
            classes: attribute names, in the order of the ``sem_seg`` channels and ``label_file_names``.
            dataset_name / gt_table: where to find ``label_file_names`` when the inputs lack it.
            threshold: per-attribute decision threshold (``TEST.THRESHOLD``).
            output_dir: unused (kept for the registry call signature).
            device: where statistics are reduced across processes (``cfg.MODEL.DEVICE``).
        """
        self._classes = list(classes)
        self._gt = GroundTruthLookup("label_file_names", dataset_name, gt_table)
        self._space = LabelSpace(classes=tuple(classes), multi_label=True, threshold=float(threshold))
        self._device = torch.device(device)
        self._task = task_name
        self.reset()

    @classmethod
    def from_config(cls, cfg, dataset_name: str, output_dir: Optional[str] = None) -> Dict[str, Any]:
        """Return the constructor arguments: ``classes`` from the metadata, ``MODEL.DEVICE``, ``TEST.THRESHOLD``."""
        from skinformer.data.catalog import MetadataCatalog

        meta = MetadataCatalog.get(dataset_name)
        return dict(classes=list(meta.classes), dataset_name=dataset_name, output_dir=output_dir,
                    device=cfg.MODEL.DEVICE, threshold=cfg.TEST.THRESHOLD)

    def reset(self) -> None:
        """Zero the summed normalised confusion counts and the image count."""
        self._sum: Optional[torch.Tensor] = None  # float64 K×4 (tp, fp, fn, tn), normalised per image
        self._num_images = 0

    def process(self, inputs: List[dict], outputs: List[dict]) -> None:
        """Add each image's per-attribute ``K×4`` ``(tp, fp, fn, tn)`` counts divided by its pixel count ``H·W``.

        Scores must be ``K×H×W`` and ``label_file_names`` must list ``K`` files of size ``H×W``.
        """
        k = len(self._classes)
        for inp, out in zip(inputs, outputs):
            scores = out["sem_seg"]
            check_scores(scores, inp, self._classes, what="attributes")
            files = list(self._gt(inp))
            if len(files) != k:
                raise ValueError(
                    f"'label_file_names' of {inp.get('file_name')!r} lists {len(files)} files; expected one per "
                    f"attribute {self._classes}"
                )
            h, w = scores.shape[1:]
            gt = read_binary_stack(files, (h, w), scores.device)
            counts = multilabel_confusion(self._space.masks_from_scores(scores), gt)
            # the official normalisation: every image counts the same, whatever its resolution
            normalized = counts.double() / float(h * w)
            self._sum = normalized if self._sum is None else self._sum + normalized
            self._num_images += 1

    def evaluate(self) -> Dict[str, Dict[str, float]]:
        """Sum the counts over processes and return ``{task_name: metrics}`` on the main process (``{}`` elsewhere).

        Metrics: ``jaccard-<a>``, ``dice-<a>``, the micro and the mean Jaccard / Dice.
        """
        k = len(self._classes)
        total = self._sum if self._sum is not None else torch.zeros(k, 4, dtype=torch.float64, device=self._device)
        total = all_reduce_statistics(total, self._device)
        num_images = int(all_reduce_statistics(torch.tensor([self._num_images], device=self._device), self._device))
        if not comm.is_main_process():
            return {}
        if num_images == 0:
            logger.warning(f"[{self._task}] no images were processed; every attribute scores 1.0 by the official rule")
        results = isic_task2_summary(total, self._classes)
        logger.info(f"[{self._task}] {num_images} images: jaccard_micro {results['jaccard_micro']:.4f}, "
                    f"dice_micro {results['dice_micro']:.4f}, jaccard_mean {results['jaccard_mean']:.4f}")
        return {self._task: results}


@EVALUATOR_REGISTRY.register()
def isic_task2(cfg, dataset_name: str, output_dir: Optional[str] = None) -> ISICTask2Evaluator:
    """``evaluator_type: isic_task2`` -> :class:`ISICTask2Evaluator`."""
    return ISICTask2Evaluator(cfg, dataset_name=dataset_name, output_dir=output_dir)
