"""Budgets in epochs: ``SOLVER.MAX_EPOCHS``, ``SOLVER.CHECKPOINT_PERIOD_EPOCHS`` and
``TEST.EVAL_PERIOD_EPOCHS`` turned into iterations from the training-set size and the batch.

One iteration consumes ``SOLVER.IMS_PER_BATCH × SOLVER.ACCUMULATE_STEPS`` images (all
processes together), so an epoch is ``ceil(num_images / that)`` iterations. A key left at 0
keeps its iteration counterpart (``MAX_ITER``, ``CHECKPOINT_PERIOD``, ``EVAL_PERIOD``).
"""
import logging
import math
from typing import Optional

__all__ = ["iters_per_epoch", "num_train_images", "apply_epoch_budgets", "uses_epochs"]

logger = logging.getLogger(__name__)


def num_train_images(cfg) -> int:
    """Number of training records (``DATASETS.TRAIN``, after the loader's empty-annotation filter)."""
    from skinformer.data.build import get_dataset_dicts

    return len(get_dataset_dicts(cfg.DATASETS.TRAIN, filter_empty=cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS))


def iters_per_epoch(cfg, num_images: Optional[int] = None) -> int:
    """Iterations per epoch of the training set (computed from the datasets when not given)."""
    num_images = num_train_images(cfg) if num_images is None else int(num_images)
    per_iter = int(cfg.SOLVER.IMS_PER_BATCH) * int(cfg.SOLVER.ACCUMULATE_STEPS)
    if num_images <= 0 or per_iter <= 0:
        raise ValueError(f"Cannot size an epoch: {num_images} training images, SOLVER.IMS_PER_BATCH × "
                         f"ACCUMULATE_STEPS = {per_iter}")
    return math.ceil(num_images / per_iter)


def uses_epochs(cfg) -> bool:
    """Whether any schedule, checkpoint or evaluation key of ``cfg`` is given in epochs."""
    return (cfg.SOLVER.MAX_EPOCHS > 0 or cfg.SOLVER.CHECKPOINT_PERIOD_EPOCHS > 0 or cfg.TEST.EVAL_PERIOD_EPOCHS > 0
            or cfg.SOLVER.SCHEDULER_STEP_UNIT == "epoch")


def apply_epoch_budgets(cfg, num_images: Optional[int] = None):
    """Return ``cfg`` (a clone when anything changes) with the epoch keys converted; logged."""
    if not uses_epochs(cfg):
        return cfg
    ipe = iters_per_epoch(cfg, num_images)
    cfg = cfg.clone()
    was_frozen = cfg.is_frozen()
    cfg.defrost()
    done = []
    for key, node, target in (("SOLVER.MAX_EPOCHS", cfg.SOLVER, "MAX_ITER"),
                              ("SOLVER.CHECKPOINT_PERIOD_EPOCHS", cfg.SOLVER, "CHECKPOINT_PERIOD"),
                              ("TEST.EVAL_PERIOD_EPOCHS", cfg.TEST, "EVAL_PERIOD")):
        epochs = node[key.split(".")[1]]
        if epochs < 0:
            raise ValueError(f"{key} must be >= 0, got {epochs}")
        if epochs > 0:
            node[target] = int(epochs) * ipe
            done.append(f"{key}={epochs} -> {target}={node[target]}")
    logger.info("Epoch budgets: 1 epoch = %d iterations (%s images / (%d per batch x %d accumulated))%s",
                ipe, num_images if num_images is not None else "the training", cfg.SOLVER.IMS_PER_BATCH,
                cfg.SOLVER.ACCUMULATE_STEPS, ("; " + ", ".join(done)) if done else "")
    if was_frozen:
        cfg.freeze()
    return cfg
