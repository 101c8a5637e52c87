"""Evaluation: the evaluator protocol, the inference loop and one evaluator per benchmark.

Importing this package registers every built-in evaluator in ``EVALUATOR_REGISTRY`` under the
dataset metadata's ``evaluator_type``: ``sem_seg``, ``isic_task1``, ``binary`` (same as isic_task1,
task key "binary"), ``isic_task2`` and ``coco_instance``.
"""
from .build import EVALUATOR_REGISTRY, build_evaluator
from .evaluator import (DatasetEvaluator, DatasetEvaluators, all_reduce_statistics, inference_context,
                        inference_on_dataset)
from .testing import flatten_results_dict, print_csv_format, verify_results
from . import metrics
from .metrics import foreground_from_scores, labels_from_scores, multilabel_from_scores
from .sem_seg_evaluation import SemSegEvaluator
from .isic_task1_evaluation import ISICTask1Evaluator
from .isic_task2_evaluation import ISICTask2Evaluator
from .coco_evaluation import COCOInstanceEvaluator
from .per_image_evaluation import PerImageEvaluator

__all__ = [
    "EVALUATOR_REGISTRY", "build_evaluator",
    "DatasetEvaluator", "DatasetEvaluators", "inference_on_dataset", "inference_context", "all_reduce_statistics",
    "print_csv_format", "flatten_results_dict", "verify_results",
    "metrics", "labels_from_scores", "foreground_from_scores", "multilabel_from_scores",
    "SemSegEvaluator", "ISICTask1Evaluator", "ISICTask2Evaluator", "COCOInstanceEvaluator",
]
