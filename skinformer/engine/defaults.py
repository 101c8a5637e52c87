"""The default training workflow (detectron2's ``engine/defaults.py``).

:class:`DefaultTrainer` builds model, optimizer, loaders, DDP, scheduler, checkpointer and the
default hooks from a config; every ``build_*`` is an overridable classmethod. It checks at start-up
that ``MODEL.SEM_SEG_HEAD.NUM_CLASSES`` and ``IGNORE_VALUE`` agree with the datasets' metadata, and
validates the first training images.

The command line and set-up (:mod:`skinformer.engine.setup`) and :class:`DefaultPredictor`
(:mod:`skinformer.engine.predictor`) are importable from here too.
"""
import inspect
import logging
import os
import weakref
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Sequence

import torch
from torch.nn.parallel import DistributedDataParallel

from skinformer.checkpoint import DetectionCheckpointer, remove_stale_temporary_files
from skinformer.config import CfgNode
from skinformer.data.validation import validate_first_images
from skinformer.evaluation import build_evaluator, inference_on_dataset, print_csv_format
from skinformer.evaluation.visualization import write_overlays
from skinformer.utils import comm
from skinformer.utils.events import CommonMetricPrinter, JSONWriter, TensorboardXWriter
from skinformer.utils.file_io import PathManager
from skinformer.utils.logger import setup_logger

from . import hooks
from .predictor import DefaultPredictor
from .setup import (OutputDirError, check_cfg, check_cfg_against_metadata, default_argument_parser, default_setup,
                    earlier_run_files, prepare_output_dir, register_config_datasets, setup_cfg)
from .train_loop import AMPTrainer, SimpleTrainer, TrainerBase, rng_preserved

__all__ = [
    "create_ddp_model",
    "default_argument_parser",
    "default_setup",
    "default_writers",
    "setup_cfg",
    "check_cfg",
    "check_cfg_against_metadata",
    "earlier_run_files",
    "prepare_output_dir",
    "register_config_datasets",
    "OutputDirError",
    "DefaultPredictor",
    "DefaultTrainer",
]

logger = logging.getLogger(__name__)


def default_writers(output_dir: str, max_iter: Optional[int] = None, window_size: int = 20,
                    console_terms: Sequence[str] = ("loss_*",), console_skip: Sequence[str] = ()):
    """Console printer (only the loss terms matching ``console_terms`` and none of
    ``console_skip``, besides ``total_loss``), ``OUTPUT_DIR/metrics.json`` and TensorBoard
    writers (every scalar)."""
    PathManager.mkdirs(output_dir)
    return [
        CommonMetricPrinter(max_iter, window_size=window_size, terms=console_terms, skip=console_skip),
        JSONWriter(os.path.join(output_dir, "metrics.json"), window_size=window_size),
        TensorboardXWriter(output_dir, window_size=window_size),
    ]


def create_ddp_model(model: torch.nn.Module, *, fp16_compression: bool = False, **kwargs) -> torch.nn.Module:
    """Wrap in DistributedDataParallel when world size > 1 (``device_ids`` only for CUDA)."""
    if comm.get_world_size() == 1:
        return model
    params = list(model.parameters())
    device = params[0].device if params else torch.device("cpu")
    if device.type == "cuda" and "device_ids" not in kwargs:
        kwargs["device_ids"] = [device.index if device.index is not None else comm.get_local_rank()]
    if "broadcast_buffers" in kwargs and "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters:
        # newer torch renamed the per-forward buffer sync (the old name warns)
        kwargs["forward_sync_buffers"] = kwargs.pop("broadcast_buffers")
    ddp = DistributedDataParallel(model, **kwargs)
    if fp16_compression:
        from torch.distributed.algorithms.ddp_comm_hooks import default as comm_hooks

        ddp.register_comm_hook(state=None, hook=comm_hooks.fp16_compress_hook)
    return ddp


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if isinstance(model, DistributedDataParallel) else model


def _validate_first_images(cfg: CfgNode) -> None:
    if cfg.DATASETS.VALIDATE_FIRST_N <= 0:
        return
    validate_first_images(cfg)


def _print_results(dataset_name: str, results: Dict[str, Any]) -> None:
    logging.getLogger("skinformer").info("Evaluation results for %s in csv format:", dataset_name)
    print_csv_format(results)


# ------------------------------------------------------------------------------------------
# Trainer
# ------------------------------------------------------------------------------------------
class DefaultTrainer(TrainerBase):
    """Train with the standard recipe from a config.

    Construction: check config vs dataset metadata -> validate first images -> build_model ->
    build_optimizer -> build_train_loader -> DDP (world size > 1) -> SimpleTrainer or AMPTrainer
    (``SOLVER.AMP.ENABLED``) -> build_lr_scheduler -> checkpointer -> build_hooks.

    Example::

        trainer = DefaultTrainer(cfg)
        trainer.resume_or_load(resume=args.resume)
        trainer.train()

    Attributes: ``scheduler``, ``checkpointer`` (:class:`DetectionCheckpointer`), ``cfg``;
    ``model``, ``data_loader``, ``optimizer`` forward to the inner Simple/AMP trainer.
    """

    def __init__(self, cfg: CfgNode):
        super().__init__()
        log = logging.getLogger("skinformer")
        if not log.isEnabledFor(logging.INFO):
            setup_logger()
        from skinformer.solver import apply_epoch_budgets

        # epochs -> iterations first, so auto-scaling keeps the number of epochs
        cfg = apply_epoch_budgets(cfg)
        cfg = DefaultTrainer.auto_scale_workers(cfg, comm.get_world_size())
        self.check_dataset_metadata(cfg)
        _validate_first_images(cfg)

        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)
        model = create_ddp_model(model, broadcast_buffers=False)
        self._trainer = self._build_step_trainer(cfg, model, data_loader, optimizer)
        # the inner trainer calls after_backward on itself: route it to our hooks
        self._trainer.after_backward = self.after_backward

        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = DetectionCheckpointer(model, cfg.OUTPUT_DIR, trainer=weakref.proxy(self))
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        self._last_eval_results: Dict = {}
        self.register_hooks(self.build_hooks())

    @staticmethod
    def _build_step_trainer(cfg, model, data_loader, optimizer) -> SimpleTrainer:
        kwargs = {"accumulate_steps": cfg.SOLVER.ACCUMULATE_STEPS}
        if cfg.SOLVER.AMP.ENABLED:
            return AMPTrainer(model, data_loader, optimizer, precision=cfg.SOLVER.AMP.DTYPE, **kwargs)
        return SimpleTrainer(model, data_loader, optimizer, **kwargs)

    # -- forwarding to the step trainer ----------------------------------------------------
    @property
    def model(self):
        """The model being trained (DDP-wrapped when world size > 1), held by the inner step trainer."""
        return self._trainer.model

    @property
    def data_loader(self):
        """The training data loader of the inner step trainer."""
        return self._trainer.data_loader

    @property
    def optimizer(self):
        """The optimizer of the inner step trainer."""
        return self._trainer.optimizer

    def run_step(self):
        """Sync ``iter`` / ``max_iter`` to the inner Simple/AMP trainer and run one step with it."""
        self._trainer.iter = self.iter
        self._trainer.max_iter = self.max_iter
        self._trainer.run_step()

    def state_dict(self):
        """Return :meth:`TrainerBase.state_dict` (iteration, hook states incl. the LR scheduler's, storage)
        plus the inner trainer's state under ``_trainer`` (optimizer, data loader position, RNG, grad scaler).
        """
        ret = super().state_dict()
        ret["_trainer"] = self._trainer.state_dict()
        return ret

    def load_state_dict(self, state_dict):
        """Restore the state saved by :meth:`state_dict`, the inner trainer's included."""
        super().load_state_dict(state_dict)
        self._trainer.load_state_dict(state_dict["_trainer"])

    # -- checkpoints -----------------------------------------------------------------------
    def resume_or_load(self, resume: bool = True) -> None:
        """With ``resume`` and ``OUTPUT_DIR/last_checkpoint`` present: restore model, optimizer,
        scheduler, grad scaler, data-loader position, RNG and hook states, and continue at the
        saved iteration + 1. Otherwise load only ``MODEL.WEIGHTS`` (if set) and start at 0."""
        resuming = resume and self.checkpointer.has_checkpoint()
        if comm.is_main_process():
            remove_stale_temporary_files(self.cfg.OUTPUT_DIR)
        # a resumed checkpoint must fit exactly; MODEL.WEIGHTS may fit partially (fine-tuning), loudly
        extra = self.checkpointer.resume_or_load(self.cfg.MODEL.WEIGHTS, resume=resume, source="MODEL.WEIGHTS",
                                                 allow_partial=self.cfg.MODEL.ALLOW_PARTIAL_WEIGHTS)
        if resuming:
            self.start_iter = self.iter + 1
            logging.getLogger("skinformer").info(
                "Resumed at iteration %d (checkpoint of iteration %s): restored model, optimizer, "
                "LR scheduler%s, data loader position, RNG states and hook states.",
                self.start_iter, extra.get("iteration", self.iter),
                ", grad scaler" if getattr(self._trainer, "grad_scaler", None) is not None else "",
            )
        else:
            self.start_iter = 0

    # -- training --------------------------------------------------------------------------
    def build_hooks(self) -> List[hooks.HookBase]:
        """IterationTimer, LRScheduler, ModelEMA (if SOLVER.EMA.ENABLED: evaluation, model_best and
        model_final then use the average), PeriodicCheckpointer (main), EvalHook, BestCheckpointer
        (main, if TEST.BEST_CHECKPOINT_METRIC or early stopping), ReduceLROnPlateau (if
        SOLVER.PLATEAU.METRIC), EarlyStopping (if SOLVER.EARLY_STOPPING.PATIENCE), PeriodicWriter
        (main, LOG_PERIOD)."""
        cfg = self.cfg
        # the weight average (None without SOLVER.EMA) comes before the checkpointers and the
        # evaluation, which use this step's average
        ret: List[Optional[hooks.HookBase]] = [hooks.IterationTimer(), hooks.LRScheduler(),
                                               hooks.build_model_ema(cfg, self.model)]
        periodic_ckpt = hooks.PeriodicCheckpointer(self.checkpointer, cfg.SOLVER.CHECKPOINT_PERIOD)
        # plateau / early stopping change state on an evaluation: checkpoint after them instead,
        # so a checkpoint of an evaluation iteration resumes with that evaluation's effect
        metric_hooks = bool(cfg.SOLVER.PLATEAU.METRIC) or cfg.SOLVER.EARLY_STOPPING.PATIENCE > 0
        if comm.is_main_process() and not metric_hooks:
            ret.append(periodic_ckpt)

        def test_and_save_results():
            with hooks.averaged_weights(self):
                self._last_eval_results = self.test(self.cfg, self.model)
            return self._last_eval_results

        # after checkpointing, so a crash in evaluation still leaves a checkpoint
        ret.append(hooks.EvalHook(cfg.TEST.EVAL_PERIOD, test_and_save_results,
                                  eval_start_iter=cfg.TEST.EVAL_START_ITER))
        stop = cfg.SOLVER.EARLY_STOPPING
        stop_metric = stop.METRIC or cfg.TEST.BEST_CHECKPOINT_METRIC
        if stop.PATIENCE > 0 and not stop_metric:
            raise ValueError("SOLVER.EARLY_STOPPING.PATIENCE > 0 needs SOLVER.EARLY_STOPPING.METRIC or "
                             "TEST.BEST_CHECKPOINT_METRIC (a validation metric such as 'isic_task1/jaccard')")
        if (stop.PATIENCE > 0 or cfg.SOLVER.PLATEAU.METRIC) and cfg.TEST.EVAL_PERIOD <= 0:
            raise ValueError("Early stopping / SOLVER.PLATEAU need periodic evaluation: set TEST.EVAL_PERIOD or "
                             "TEST.EVAL_PERIOD_EPOCHS > 0")
        best_metric, best_mode = cfg.TEST.BEST_CHECKPOINT_METRIC, cfg.TEST.BEST_CHECKPOINT_MODE
        if not best_metric and stop.PATIENCE > 0:  # early stopping keeps model_best.pth on its metric
            best_metric, best_mode = stop_metric, stop.MODE
        if comm.is_main_process() and best_metric:
            ret.append(hooks.BestCheckpointer(cfg.TEST.EVAL_PERIOD, self.checkpointer, best_metric, best_mode))
        if cfg.SOLVER.PLATEAU.METRIC:
            p = cfg.SOLVER.PLATEAU
            ret.append(hooks.ReduceLROnPlateau(cfg.TEST.EVAL_PERIOD, p.METRIC, p.MODE, p.PATIENCE, p.FACTOR,
                                               p.THRESHOLD, p.MIN_LR))
        if stop.PATIENCE > 0:
            ret.append(hooks.EarlyStopping(cfg.TEST.EVAL_PERIOD, stop_metric, stop.MODE, stop.PATIENCE, stop.MIN_DELTA,
                                           checkpointer=self.checkpointer))
        if comm.is_main_process() and metric_hooks:
            ret.append(periodic_ckpt)
        if comm.is_main_process():
            # last, so it also writes the evaluation results
            ret.append(hooks.PeriodicWriter(self.build_writers(), period=cfg.LOG_PERIOD))
        return ret

    def build_writers(self):
        """Return the :func:`default_writers` for ``OUTPUT_DIR`` with the ``LOG.CONSOLE_*`` terms."""
        return default_writers(self.cfg.OUTPUT_DIR, self.max_iter, console_terms=self.cfg.LOG.CONSOLE_TERMS,
                               console_skip=self.cfg.LOG.CONSOLE_SKIP)

    def train(self):
        """Run training; returns the last evaluation results (main process; {} elsewhere)."""
        super().train(self.start_iter, self.max_iter)
        return self._last_eval_results

    # -- overridable builders --------------------------------------------------------------
    @classmethod
    def build_model(cls, cfg) -> torch.nn.Module:
        """Build ``cfg``'s model with :func:`skinformer.modeling.meta_arch.build.build_model` and log its size."""
        from skinformer.modeling.meta_arch.build import build_model

        model = build_model(cfg)
        n_total = sum(p.numel() for p in model.parameters())
        n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
        logging.getLogger("skinformer").info("Model %s: %.2fM parameters (%.2fM trainable)",
                                             type(model).__name__, n_total / 1e6, n_train / 1e6)
        logging.getLogger(__name__).debug("Model:\n%s", model)
        return model

    @classmethod
    def build_optimizer(cls, cfg, model) -> torch.optim.Optimizer:
        """Build the optimizer with :func:`skinformer.solver.build_optimizer`."""
        from skinformer.solver import build_optimizer

        return build_optimizer(cfg, model)

    @classmethod
    def build_lr_scheduler(cls, cfg, optimizer):
        """Build the LR scheduler with :func:`skinformer.solver.build_lr_scheduler`."""
        from skinformer.solver import build_lr_scheduler

        return build_lr_scheduler(cfg, optimizer)

    @classmethod
    def build_train_loader(cls, cfg):
        """Build the training loader with :func:`skinformer.data.build.build_train_loader`."""
        from skinformer.data.build import build_train_loader

        return build_train_loader(cfg)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name: str):
        """Build the loader of test set ``dataset_name`` with :func:`skinformer.data.build.build_test_loader`."""
        from skinformer.data.build import build_test_loader

        return build_test_loader(cfg, dataset_name)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name: str, output_dir: Optional[str] = None):
        """Build the evaluator of ``dataset_name`` from its metadata's ``evaluator_type``.

        ``output_dir`` defaults to ``OUTPUT_DIR/inference/<dataset_name>``.
        """
        output_dir = output_dir or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        return build_evaluator(cfg, dataset_name, output_dir)

    @classmethod
    def check_dataset_metadata(cls, cfg) -> None:
        """Check ``NUM_CLASSES`` / ``IGNORE_VALUE`` against the datasets' metadata.

        Raises ``ValueError`` on a mismatch; see :func:`check_cfg_against_metadata`.
        """
        check_cfg_against_metadata(cfg)

    # -- evaluation ------------------------------------------------------------------------
    @classmethod
    def test(cls, cfg, model, evaluators=None):
        """Evaluate ``model`` on every dataset of ``DATASETS.TEST``; print a table per dataset.

        Returns ``{dataset: {task: {metric: value}}}``, or the inner dict if there is one dataset.
        """
        from skinformer.modeling.test_time_augmentation import build_inference_model

        model = build_inference_model(cfg, model)
        names = list(cfg.DATASETS.TEST)
        if evaluators is not None and not isinstance(evaluators, (list, tuple)):
            evaluators = [evaluators]
        if evaluators is not None and len(evaluators) != len(names):
            raise ValueError(f"{len(evaluators)} evaluators given for {len(names)} datasets in DATASETS.TEST {names}")
        results = OrderedDict()
        for idx, dataset_name in enumerate(names):
            data_loader = cls.build_test_loader(cfg, dataset_name)
            if evaluators is not None:
                evaluator = evaluators[idx]
            else:
                try:
                    evaluator = cls.build_evaluator(cfg, dataset_name)
                except NotImplementedError:
                    logger.warning("No evaluator for dataset '%s'; it is skipped. Implement "
                                   "DefaultTrainer.build_evaluator or pass evaluators.", dataset_name)
                    results[dataset_name] = {}
                    continue
            results_i = inference_on_dataset(model, data_loader, evaluator)
            results[dataset_name] = results_i
            if comm.is_main_process():
                if not isinstance(results_i, dict):
                    raise TypeError(f"Evaluator must return a dict on the main process, got {results_i!r}")
                _print_results(dataset_name, results_i)
        if len(results) == 1:
            results = list(results.values())[0]
        return results

    @classmethod
    def visualize(cls, cfg, model, dataset_name: Optional[str] = None, num_images: Optional[int] = None,
                  output_dir: Optional[str] = None) -> List[str]:
        """Write ``TEST.NUM_VIS`` overlay PNGs (prediction fill + ground-truth contour) of the
        first images of ``dataset_name`` (default ``DATASETS.TEST[0]``) to ``OUTPUT_DIR/vis``, and
        log them to TensorBoard as ``vis/<stem>`` (in OUTPUT_DIR, or ``output_dir`` when given);
        see :func:`skinformer.evaluation.visualization.write_overlays`.
        Returns the written paths. Call on the main process only."""
        from skinformer.modeling.test_time_augmentation import build_inference_model

        num = cfg.TEST.NUM_VIS if num_images is None else num_images
        if num <= 0 or not (dataset_name or cfg.DATASETS.TEST):
            return []
        name = dataset_name or cfg.DATASETS.TEST[0]
        out_dir = output_dir or os.path.join(cfg.OUTPUT_DIR, "vis")
        model = _unwrap(model)
        # the loader's images are at the original resolution under TTA (build_augmentation)
        with rng_preserved():
            return write_overlays(model, cls.build_test_loader(cfg, name), name, out_dir, num,
                                  threshold=cfg.TEST.THRESHOLD, inference_model=build_inference_model(cfg, model),
                                  tensorboard_dir=out_dir if output_dir else cfg.OUTPUT_DIR)

    # -- scaling rule ----------------------------------------------------------------------
    @staticmethod
    def auto_scale_workers(cfg: CfgNode, num_workers: int) -> CfgNode:
        """Rescale a recipe tuned for ``SOLVER.REFERENCE_WORLD_SIZE`` processes to ``num_workers``
        by the linear rule: IMS_PER_BATCH and BASE_LR × k; MAX_ITER, STEPS, WARMUP_ITERS,
        CHECKPOINT_PERIOD, EVAL_PERIOD, EVAL_START_ITER ÷ k (k = num_workers / reference).
        Returns a new config (frozen if the input was); no-op if REFERENCE_WORLD_SIZE is 0 or equal.
        """
        old = cfg.SOLVER.REFERENCE_WORLD_SIZE
        if old == 0 or old == num_workers:
            return cfg
        if cfg.SOLVER.IMS_PER_BATCH % old != 0:
            raise ValueError(
                f"SOLVER.IMS_PER_BATCH ({cfg.SOLVER.IMS_PER_BATCH}) must be divisible by "
                f"SOLVER.REFERENCE_WORLD_SIZE ({old}) to rescale it"
            )
        cfg = cfg.clone()
        frozen = cfg.is_frozen()
        cfg.defrost()
        scale = num_workers / old
        cfg.SOLVER.IMS_PER_BATCH = int(round(cfg.SOLVER.IMS_PER_BATCH * scale))
        cfg.SOLVER.BASE_LR = cfg.SOLVER.BASE_LR * scale
        cfg.SOLVER.MAX_ITER = int(round(cfg.SOLVER.MAX_ITER / scale))
        cfg.SOLVER.WARMUP_ITERS = int(round(cfg.SOLVER.WARMUP_ITERS / scale))
        cfg.SOLVER.STEPS = tuple(int(round(s / scale)) for s in cfg.SOLVER.STEPS)
        cfg.SOLVER.CHECKPOINT_PERIOD = max(1, int(round(cfg.SOLVER.CHECKPOINT_PERIOD / scale)))
        cfg.TEST.EVAL_PERIOD = int(round(cfg.TEST.EVAL_PERIOD / scale))
        cfg.TEST.EVAL_START_ITER = int(round(cfg.TEST.EVAL_START_ITER / scale))
        cfg.SOLVER.REFERENCE_WORLD_SIZE = num_workers  # the scaled config is now tuned for this
        logging.getLogger("skinformer").info(
            "Auto-scaling the config to world size %d (reference %d): IMS_PER_BATCH=%d, BASE_LR=%g, "
            "MAX_ITER=%d, WARMUP_ITERS=%d, STEPS=%s, CHECKPOINT_PERIOD=%d, EVAL_PERIOD=%d.",
            num_workers, old, cfg.SOLVER.IMS_PER_BATCH, cfg.SOLVER.BASE_LR, cfg.SOLVER.MAX_ITER,
            cfg.SOLVER.WARMUP_ITERS, cfg.SOLVER.STEPS, cfg.SOLVER.CHECKPOINT_PERIOD, cfg.TEST.EVAL_PERIOD,
        )
        if frozen:
            cfg.freeze()
        return cfg


# ------------------------------------------------------------------------------------------
# Predictor
# ------------------------------------------------------------------------------------------
