"""The default training/evaluation workflow (detectron2's ``engine/defaults.py``).

* :func:`default_argument_parser`, :func:`setup_cfg`, :func:`default_setup`: command line,
  config, logging, seeding, dataset registration, ``OUTPUT_DIR/config.yaml``;
* :class:`DefaultTrainer`: builds model, optimizer, loaders, DDP, scheduler, checkpointer and
  the default hooks from a config; every ``build_*`` is an overridable classmethod;
* :class:`DefaultPredictor`: one image in, the model's output dict out.

The trainer checks at start-up that ``MODEL.SEM_SEG_HEAD.NUM_CLASSES`` and ``IGNORE_VALUE``
agree with the datasets' metadata, and validates the first training images.
"""
import argparse
import inspect
import logging
import os
import re
import sys
import weakref
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from skinformer.checkpoint import DetectionCheckpointer, remove_stale_temporary_files
from skinformer.config import CfgNode, get_cfg
from skinformer.data.transforms import AugmentationList, apply_augmentations, build_augmentation
from skinformer.utils import comm
from skinformer.utils.collect_env import collect_env_info
from skinformer.utils.env import seed_all_rng
from skinformer.utils.events import CommonMetricPrinter, JSONWriter, TensorboardXWriter
from skinformer.utils.file_io import PathManager
from skinformer.utils.logger import create_small_table, setup_logger

from . import hooks
from .train_loop import AMPTrainer, SimpleTrainer, TrainerBase, rng_preserved

__all__ = [
    "create_ddp_model",
    "default_argument_parser",
    "default_setup",
    "default_writers",
    "setup_cfg",
    "check_cfg",
    "check_cfg_against_metadata",
    "prepare_output_dir",
    "OutputDirError",
    "DefaultPredictor",
    "DefaultTrainer",
]

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------
# Command line and set-up
# ------------------------------------------------------------------------------------------
def default_argument_parser(epilog: Optional[str] = None) -> argparse.ArgumentParser:
    """detectron2's flags: ``--config-file --resume --eval-only --num-gpus --num-machines
    --machine-rank --dist-url`` and trailing ``KEY VALUE`` config overrides."""
    epilog = epilog or f"""
Examples:

Run on a single machine (one process per GPU; on a machine without CUDA, --num-gpus N starts N
gloo CPU processes):
    $ {sys.argv[0]} --num-gpus 2 --config-file cfg.yaml

Change some config options:
    $ {sys.argv[0]} --config-file cfg.yaml MODEL.WEIGHTS /path/to/weight.pth SOLVER.BASE_LR 0.001

Resume the last run in OUTPUT_DIR exactly (model, optimizer, scheduler, data order, RNG):
    $ {sys.argv[0]} --config-file cfg.yaml --resume OUTPUT_DIR out/run1

Evaluate a checkpoint:
    $ {sys.argv[0]} --config-file cfg.yaml --eval-only MODEL.WEIGHTS out/run1/model_final.pth

Run on multiple machines:
    (machine0)$ {sys.argv[0]} --machine-rank 0 --num-machines 2 --dist-url tcp://<machine0>:<port> [--other-flags]
    (machine1)$ {sys.argv[0]} --machine-rank 1 --num-machines 2 --dist-url tcp://<machine0>:<port> [--other-flags]

Under torchrun the process group is taken from the environment (env://):
    $ torchrun --nproc-per-node 2 {sys.argv[0]} --config-file cfg.yaml
"""
    parser = _OverridesParser(epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", default="", metavar="FILE", help="path to config file")
    parser.add_argument(
        "--resume", action="store_true",
        help="Resume from OUTPUT_DIR/last_checkpoint if it exists (everything is restored); "
             "otherwise start from MODEL.WEIGHTS.",
    )
    parser.add_argument(
        "--overwrite", action="store_true",
        help="Start a new run in an OUTPUT_DIR that holds an earlier run: its checkpoints, "
             "last_checkpoint and metrics.json are deleted first. Without it (or --resume) such an "
             "OUTPUT_DIR is refused.",
    )
    parser.add_argument("--eval-only", action="store_true", help="perform evaluation only")
    parser.add_argument("--num-gpus", type=int, default=1,
                        help="number of processes per machine: GPUs, or gloo CPU processes without CUDA")
    parser.add_argument("--num-machines", type=int, default=1, help="total number of machines")
    parser.add_argument("--machine-rank", type=int, default=0, help="the rank of this machine (unique per machine)")
    parser.add_argument(
        "--dist-url", default="auto",
        help="initialization URL for the process group: tcp://<machine0>:<port>, or 'auto' (a free "
             "local port, single machine only). Ignored under torchrun. See the examples below.",
    )
    parser.add_argument(
        "opts", default=None, nargs=argparse.REMAINDER,
        help="Modify config options at the end of the command: space-separated 'KEY VALUE' pairs, "
             "e.g. SOLVER.BASE_LR 0.001 DATASETS.TRAIN '(\"isic2017_train\",)'.",
    )
    return parser


class _OverridesParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose trailing ``KEY VALUE`` overrides may be followed by flags.

    ``opts`` takes everything after the first override (argparse.REMAINDER), so
    ``... SOLVER.MAX_ITER 10 --resume`` would hand ``--resume`` to the config as a key. Switches
    (``--resume``, ``--eval-only``, ``--overwrite``) found there are applied; any other flag
    there is an error that says to put it before the overrides (its value is ambiguous).
    """

    def parse_known_args(self, args=None, namespace=None):
        namespace, extra = super().parse_known_args(args, namespace)
        opts = getattr(namespace, "opts", None)
        if not opts:
            return namespace, extra
        switches = {s: a.dest for a in self._actions if a.nargs == 0 and a.dest != "help" for s in a.option_strings}
        kept = []
        for item in opts:
            if item in switches:
                setattr(namespace, switches[item], True)
            elif item.startswith("--") and len(item) > 2 and not item[2].isdigit():
                self.error(f"'{item}' comes after the KEY VALUE config overrides; put flags that take a value "
                           "before them (e.g. --num-gpus 2 --config-file cfg.yaml SOLVER.BASE_LR 0.01).")
            else:
                kept.append(item)
        namespace.opts = kept
        return namespace, extra


def check_cfg(cfg: CfgNode) -> None:
    """Checks of values that would otherwise fail deep inside a build (at config time)."""
    from skinformer.utils.env import resolve_device

    resolve_device(cfg.MODEL.DEVICE, key="MODEL.DEVICE")


def setup_cfg(args) -> CfgNode:
    """``get_cfg()`` + ``args.config_file`` + ``args.opts``, checked (:func:`check_cfg`), frozen."""
    cfg = get_cfg()
    if getattr(args, "config_file", ""):
        cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(list(getattr(args, "opts", None) or []))
    check_cfg(cfg)
    cfg.freeze()
    return cfg


class OutputDirError(ValueError):
    """``OUTPUT_DIR`` holds an earlier run that starting a new one would overwrite."""


_RUN_FILE = re.compile(r"^(model_.+\.pth|last_checkpoint)$")
# what a new run writes and an earlier run's files would otherwise mix with
_RUN_LOGS = re.compile(r"^(metrics\.json|events\.out\.tfevents\..*)$")


def earlier_run_files(output_dir: str) -> List[str]:
    """Checkpoints (``model_*.pth``) and ``last_checkpoint`` of an earlier run in ``output_dir``."""
    if not output_dir or not os.path.isdir(output_dir):
        return []
    return sorted(f for f in os.listdir(output_dir) if _RUN_FILE.match(f))


def prepare_output_dir(output_dir: str, *, resume: bool = False, overwrite: bool = False,
                       eval_only: bool = False) -> None:
    """Refuse to start a new training run over an earlier one in ``output_dir``.

    A new run would replace ``model_final.pth``, ``last_checkpoint`` and ``config.yaml`` and
    append to ``metrics.json``. Allowed: ``resume`` (continue it), ``eval_only`` (nothing is
    overwritten), or ``overwrite`` (the earlier run's checkpoints and logs are deleted first, on
    the main process). Otherwise :class:`OutputDirError` says which option to pick.
    """
    found = earlier_run_files(output_dir)
    if not found or resume or eval_only:
        return
    if not overwrite:
        shown = ", ".join(found[:6]) + (f", ... ({len(found) - 6} more)" if len(found) > 6 else "")
        raise OutputDirError(
            f"OUTPUT_DIR '{output_dir}' already holds checkpoints of an earlier run ({shown}). "
            "Pass --resume to continue that run, --overwrite to delete it and start again, or set "
            "another OUTPUT_DIR."
        )
    if comm.is_main_process():
        doomed = found + sorted(f for f in os.listdir(output_dir) if _RUN_LOGS.match(f))
        for name in doomed:
            os.remove(os.path.join(output_dir, name))
        logging.getLogger("skinformer").warning("--overwrite: deleted the earlier run's files in %s: %s",
                                                output_dir, ", ".join(doomed))
    comm.synchronize()


def _apply_determinism(cfg: CfgNode) -> None:
    if not cfg.DETERMINISTIC:
        return
    # cuBLAS needs this before its first use to be deterministic
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    # warn_only: some CUDA kernels (e.g. grid_sample backward) have no deterministic version
    torch.use_deterministic_algorithms(True, warn_only=True)
    logging.getLogger("skinformer").info("DETERMINISTIC=True: deterministic algorithms enabled, cuDNN benchmark off")


def register_config_datasets(cfg: CfgNode) -> List[str]:
    """Register the folder datasets of ``DATASETS.DEFINITIONS`` (idempotent per process)."""
    paths = list(cfg.DATASETS.DEFINITIONS)
    if not paths:
        return []
    from skinformer.data.datasets.folder import register_folder_datasets

    return register_folder_datasets(paths)


def default_setup(cfg: CfgNode, args) -> None:
    """Per-process start-up: OUTPUT_DIR, loggers ("skinformer", "fvcore"), environment/args/config
    logs, ``OUTPUT_DIR/config.yaml``, seeds (``SEED + rank``; random and logged if < 0),
    ``DATASETS.DEFINITIONS`` registration, determinism and cuDNN settings."""
    output_dir = cfg.OUTPUT_DIR
    eval_only = bool(getattr(args, "eval_only", False))
    # before anything is written into it (config.yaml, log.txt)
    prepare_output_dir(output_dir, resume=bool(getattr(args, "resume", False)),
                       overwrite=bool(getattr(args, "overwrite", False)), eval_only=eval_only)
    if comm.is_main_process() and output_dir:
        PathManager.mkdirs(output_dir)
    rank = comm.get_rank()
    setup_logger(output_dir or None, distributed_rank=rank, name="fvcore")
    log = setup_logger(output_dir or None, distributed_rank=rank, name="skinformer")

    log.info("Rank of current process: %d. World size: %d", rank, comm.get_world_size())
    log.info("Environment info:\n%s", collect_env_info())
    log.info("Command line arguments: %s", args)
    config_file = getattr(args, "config_file", "")
    if config_file:
        with PathManager.open(config_file, "r") as f:
            log.info("Contents of args.config_file=%s:\n%s", config_file, f.read())

    if comm.is_main_process() and output_dir:
        # an evaluation keeps the training run's config.yaml
        path = os.path.join(output_dir, "config_eval.yaml" if eval_only and earlier_run_files(output_dir)
                            else "config.yaml")
        with PathManager.open(path, "w") as f:
            f.write(cfg.dump())
        log.info("Full config saved to %s", path)

    seed = seed_all_rng(None if cfg.SEED < 0 else cfg.SEED + rank)
    log.info("Seed of rank %d: %d (SEED=%d%s)", rank, seed, cfg.SEED, ", drawn at random" if cfg.SEED < 0 else " + rank")
    _apply_determinism(cfg)
    if not cfg.DETERMINISTIC and not getattr(args, "eval_only", False):
        torch.backends.cudnn.benchmark = cfg.CUDNN_BENCHMARK
    names = register_config_datasets(cfg)
    if names:
        log.info("Registered folder datasets from DATASETS.DEFINITIONS: %s", names)


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


def check_cfg_against_metadata(cfg: CfgNode, dataset_names: Optional[Sequence[str]] = None) -> None:
    """Raise ``ValueError`` if ``MODEL.SEM_SEG_HEAD.NUM_CLASSES`` differs from
    ``len(metadata.classes)`` or ``MODEL.SEM_SEG_HEAD.IGNORE_VALUE`` from ``metadata.ignore_label``
    of any dataset in ``dataset_names`` (default: DATASETS.TRAIN + DATASETS.TEST)."""
    from skinformer.data.catalog import DatasetCatalog, MetadataCatalog

    names = list(dataset_names) if dataset_names is not None else list(cfg.DATASETS.TRAIN) + list(cfg.DATASETS.TEST)
    num_classes = cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES
    ignore_value = cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE
    for name in dict.fromkeys(names):
        meta = MetadataCatalog.get(name)
        classes = meta.get("classes")
        if classes is None:
            registered = name in DatasetCatalog.list()
            raise ValueError(
                f"Dataset '{name}' has no 'classes' in its metadata"
                + ("" if registered else " (it is not registered: check the name or DATASETS.DEFINITIONS)")
                + f"; cannot check MODEL.SEM_SEG_HEAD.NUM_CLASSES = {num_classes}."
            )
        if len(classes) != num_classes:
            raise ValueError(
                f"MODEL.SEM_SEG_HEAD.NUM_CLASSES = {num_classes}, but dataset '{name}' has {len(classes)} "
                f"classes {list(classes)} (metadata 'classes'). Set MODEL.SEM_SEG_HEAD.NUM_CLASSES {len(classes)}."
            )
        ignore_label = meta.get("ignore_label")
        if ignore_label is not None and int(ignore_label) != int(ignore_value):
            raise ValueError(
                f"MODEL.SEM_SEG_HEAD.IGNORE_VALUE = {ignore_value}, but dataset '{name}' has ignore_label = "
                f"{ignore_label} (metadata). Set MODEL.SEM_SEG_HEAD.IGNORE_VALUE {ignore_label}."
            )


def _validate_first_images(cfg: CfgNode) -> None:
    if cfg.DATASETS.VALIDATE_FIRST_N <= 0:
        return
    try:
        from skinformer.data.validation import validate_first_images
    except ImportError as e:
        logger.warning("Start-up image validation skipped: %s", e)
        return
    validate_first_images(cfg)


def _print_results(dataset_name: str, results: Dict[str, Any]) -> None:
    try:
        from skinformer.evaluation import print_csv_format
    except ImportError:
        print_csv_format = None
    logging.getLogger("skinformer").info("Evaluation results for %s in csv format:", dataset_name)
    if print_csv_format is not None:
        print_csv_format(results)
        return
    for task, metrics in results.items():
        logging.getLogger("skinformer").info("%s:\n%s", task, create_small_table(dict(metrics)))


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
        return self._trainer.model

    @property
    def data_loader(self):
        return self._trainer.data_loader

    @property
    def optimizer(self):
        return self._trainer.optimizer

    def run_step(self):
        self._trainer.iter = self.iter
        self._trainer.max_iter = self.max_iter
        self._trainer.run_step()

    def state_dict(self):
        ret = super().state_dict()
        ret["_trainer"] = self._trainer.state_dict()
        return ret

    def load_state_dict(self, state_dict):
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
        """IterationTimer, LRScheduler, PeriodicCheckpointer (main), EvalHook, BestCheckpointer
        (main, if TEST.BEST_CHECKPOINT_METRIC or early stopping), ReduceLROnPlateau (if
        SOLVER.PLATEAU.METRIC), EarlyStopping (if SOLVER.EARLY_STOPPING.PATIENCE), PeriodicWriter
        (main, LOG_PERIOD)."""
        cfg = self.cfg
        ret: List[Optional[hooks.HookBase]] = [hooks.IterationTimer(), hooks.LRScheduler()]
        periodic_ckpt = hooks.PeriodicCheckpointer(self.checkpointer, cfg.SOLVER.CHECKPOINT_PERIOD)
        # plateau / early stopping change state on an evaluation: checkpoint after them instead,
        # so a checkpoint of an evaluation iteration resumes with that evaluation's effect
        metric_hooks = bool(cfg.SOLVER.PLATEAU.METRIC) or cfg.SOLVER.EARLY_STOPPING.PATIENCE > 0
        if comm.is_main_process() and not metric_hooks:
            ret.append(periodic_ckpt)

        def test_and_save_results():
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
        return default_writers(self.cfg.OUTPUT_DIR, self.max_iter, console_terms=self.cfg.LOG.CONSOLE_TERMS,
                               console_skip=self.cfg.LOG.CONSOLE_SKIP)

    def train(self):
        """Run training; returns the last evaluation results (main process; {} elsewhere)."""
        super().train(self.start_iter, self.max_iter)
        return self._last_eval_results

    # -- overridable builders --------------------------------------------------------------
    @classmethod
    def build_model(cls, cfg) -> torch.nn.Module:
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
        from skinformer.solver import build_optimizer

        return build_optimizer(cfg, model)

    @classmethod
    def build_lr_scheduler(cls, cfg, optimizer):
        from skinformer.solver import build_lr_scheduler

        return build_lr_scheduler(cfg, optimizer)

    @classmethod
    def build_train_loader(cls, cfg):
        from skinformer.data.build import build_train_loader

        return build_train_loader(cfg)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name: str):
        from skinformer.data.build import build_test_loader

        return build_test_loader(cfg, dataset_name)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name: str, output_dir: Optional[str] = None):
        from skinformer.evaluation import build_evaluator

        output_dir = output_dir or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        return build_evaluator(cfg, dataset_name, output_dir)

    @classmethod
    def check_dataset_metadata(cls, cfg) -> None:
        check_cfg_against_metadata(cfg)

    # -- evaluation ------------------------------------------------------------------------
    @classmethod
    def test(cls, cfg, model, evaluators=None):
        """Evaluate ``model`` on every dataset of ``DATASETS.TEST``; print a table per dataset.

        Returns ``{dataset: {task: {metric: value}}}``, or the inner dict if there is one dataset.
        """
        from skinformer.evaluation import inference_on_dataset
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
        log them to TensorBoard as ``vis/<stem>`` (in OUTPUT_DIR, or ``output_dir`` when given).
        Returns the written paths. Call on the main process only."""
        from skinformer.data.catalog import DatasetCatalog, MetadataCatalog
        from skinformer.data.mask_io import read_image
        from skinformer.utils.visualizer import Visualizer, save_image

        num = cfg.TEST.NUM_VIS if num_images is None else num_images
        if num <= 0 or not (dataset_name or cfg.DATASETS.TEST):
            return []
        name = dataset_name or cfg.DATASETS.TEST[0]
        out_dir = output_dir or os.path.join(cfg.OUTPUT_DIR, "vis")
        meta = MetadataCatalog.get(name)
        raw = {d["file_name"]: d for d in DatasetCatalog.get(name)}
        multi_label = bool(meta.get("multi_label", False)) or any("label_file_names" in d for d in raw.values())
        vis = Visualizer(meta, multi_label=multi_label, threshold=cfg.TEST.THRESHOLD)

        def ground_truth(record):
            if record is None:
                return None
            if "sem_seg_file_name" in record:
                return vis.label_space.decode(record["sem_seg_file_name"])
            if "label_file_names" in record:
                return np.stack([vis.label_space.decode_binary(f) for f in record["label_file_names"]])
            return None

        from skinformer.modeling.test_time_augmentation import build_inference_model

        model = _unwrap(model)
        was_training = model.training
        model.eval()
        # the loader's images are at the original resolution under TTA (build_augmentation)
        tta = build_inference_model(cfg, model)
        written: List[str] = []
        tb = _OverlayTensorboard(out_dir if output_dir else cfg.OUTPUT_DIR)
        try:
            with torch.no_grad(), rng_preserved():
                for batch in cls.build_test_loader(cfg, name):
                    outputs = tta(batch)
                    for inp, out in zip(batch, outputs):
                        image = read_image(inp["file_name"])
                        canvas = vis.draw(image, out, ground_truth(raw.get(inp["file_name"])))
                        stem = os.path.splitext(os.path.basename(inp["file_name"]))[0]
                        path = os.path.join(out_dir, f"{stem}.png")
                        save_image(path, canvas)
                        tb.add(f"vis/{stem}", canvas)
                        written.append(path)
                        if len(written) >= num:
                            break
                    if len(written) >= num:
                        break
        finally:
            model.train(was_training)
            tb.close()
        logging.getLogger("skinformer").info("Wrote %d overlay images to %s", len(written), out_dir)
        return written

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


class _OverlayTensorboard:
    """Overlays for TensorBoard: queued on the event storage during training (the
    TensorboardXWriter writes them with the scalars), else written to ``log_dir`` directly."""

    def __init__(self, log_dir: str):
        from skinformer.utils.events import get_event_storage, has_event_storage

        self.storage = get_event_storage() if has_event_storage() else None
        self.log_dir = log_dir
        self.writer = None

    def add(self, name: str, image_hwc: np.ndarray) -> None:
        chw = np.ascontiguousarray(np.asarray(image_hwc).transpose(2, 0, 1))
        if self.storage is not None:
            self.storage.put_image(name, chw)
            return
        if not self.log_dir:
            return
        if self.writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(self.log_dir)
        self.writer.add_image(name, chw, 0)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


# ------------------------------------------------------------------------------------------
# Predictor
# ------------------------------------------------------------------------------------------
_INPUT_FORMATS = {"RGB": lambda img: img, "BGR": lambda img: img[:, :, ::-1]}


class DefaultPredictor:
    """Model + ``MODEL.WEIGHTS`` in eval mode for notebooks and scripts.

    ``predictor(image)`` returns the output dict of one image, ``predictor([img1, img2, ...])``
    a list of them, computed in batches of ``batch_size`` (default ``TEST.IMS_PER_BATCH``).
    Each dict holds the model's outputs at the image's own size: ``"sem_seg"`` (float ``K×H×W``
    class probabilities) and / or ``"instances"``; with ``"sem_seg"`` also ``"mask"``, the
    ``H×W`` int64 label map of the decision rule (:func:`~skinformer.utils.visualizer.scores_to_label_map`:
    ``0..K-1`` classes, ``K`` = background when it is not a class; ``threshold`` defaults to 0.5).

    Images are ``H×W×3`` uint8 in ``INPUT.FORMAT`` channel order (RGB unless set to BGR, e.g.
    for ``cv2.imread`` images), of any sizes; they are resized with the test mapper's augmentations
    (:func:`~skinformer.data.transforms.build_augmentation`: ``INPUT.FIXED_SIZE`` when set, else
    shortest edge ``INPUT.MIN_SIZE_TEST``, longest at most ``INPUT.MAX_SIZE_TEST``; none under
    ``TEST.AUG`` or ``TEST.SLIDING_WINDOW.ORIGINAL_RESOLUTION``). ``TEST.AUG.ENABLED`` runs
    test-time augmentation, ``TEST.SLIDING_WINDOW`` windowed inference.
    """

    def __init__(self, cfg: CfgNode, batch_size: Optional[int] = None, threshold: float = 0.5):
        from skinformer.modeling.meta_arch.build import build_model
        from skinformer.modeling.test_time_augmentation import build_inference_model

        self.cfg = cfg.clone()
        if cfg.INPUT.FORMAT not in _INPUT_FORMATS:
            raise ValueError(f"INPUT.FORMAT must be one of {sorted(_INPUT_FORMATS)}, got '{cfg.INPUT.FORMAT}'")
        self.model = build_model(self.cfg)
        self.model.eval()
        self.metadata = None
        if cfg.DATASETS.TEST:
            from skinformer.data.catalog import MetadataCatalog

            self.metadata = MetadataCatalog.get(cfg.DATASETS.TEST[0])
        # predictions from a partly random model would be silently wrong
        DetectionCheckpointer(self.model, save_to_disk=False).load(
            cfg.MODEL.WEIGHTS, source="MODEL.WEIGHTS", strict=not cfg.MODEL.ALLOW_PARTIAL_WEIGHTS)
        self.inference_model = build_inference_model(self.cfg, self.model)
        self.input_format = cfg.INPUT.FORMAT
        self.augmentations = AugmentationList(build_augmentation(self.cfg, is_train=False))
        self.batch_size = int(batch_size or cfg.TEST.IMS_PER_BATCH or 1)
        self.threshold = float(threshold)

    @property
    def has_background_class(self) -> bool:
        return bool(self.metadata.get("has_background_class", False)) if self.metadata is not None else False

    def _to_input(self, original_image: np.ndarray, index: int) -> Dict[str, Any]:
        original_image = np.asarray(original_image)
        if original_image.ndim != 3 or original_image.shape[2] != 3 or original_image.dtype != np.uint8:
            raise ValueError(f"Image {index}: expected an H×W×3 uint8 array, got shape {original_image.shape} "
                             f"dtype {original_image.dtype}")
        rgb = _INPUT_FORMATS[self.input_format](original_image)
        h, w = rgb.shape[:2]
        # test-time resizes are deterministic; the seed only satisfies the API
        image = apply_augmentations(self.augmentations, rgb, rng=0)[0].image
        return {"image": torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1))), "height": h, "width": w}

    def _add_mask(self, output: Dict[str, Any]) -> Dict[str, Any]:
        from skinformer.utils.visualizer import scores_to_label_map

        # multi-label maps are thresholded per class by the caller; one label map cannot hold them
        if "sem_seg" in output and not getattr(self.model, "multilabel_on", False):
            labels = scores_to_label_map(output["sem_seg"].float().cpu().numpy(), self.has_background_class,
                                         self.threshold)
            output["mask"] = torch.from_numpy(labels.astype(np.int64))
        return output

    def __call__(self, images):
        """One ``H×W×3`` image -> one output dict; a list of images -> a list of dicts."""
        single = isinstance(images, np.ndarray) and images.ndim == 3
        batch = [images] if single else list(images)
        outputs: List[Dict[str, Any]] = []
        with torch.no_grad():
            for start in range(0, len(batch), self.batch_size):
                inputs = [self._to_input(img, start + k) for k, img in enumerate(batch[start: start + self.batch_size])]
                outputs += [self._add_mask(dict(o)) for o in self.inference_model(inputs)]
        return outputs[0] if single else outputs
