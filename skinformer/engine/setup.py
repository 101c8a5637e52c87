"""Command line and per-process set-up of the default workflow (detectron2's ``engine/defaults.py``).

* :func:`default_argument_parser`: detectron2's flags plus trailing ``KEY VALUE`` overrides;
* :func:`setup_cfg` / :func:`check_cfg`: the config of a run, checked and frozen;
* :func:`default_setup`: OUTPUT_DIR (refusing to overwrite an earlier run, :func:`prepare_output_dir`),
  logging, seeding, dataset registration, ``OUTPUT_DIR/config.yaml``;
* :func:`check_cfg_against_metadata`: ``NUM_CLASSES`` / ``IGNORE_VALUE`` against the datasets' metadata.
"""
import argparse
import logging
import os
import re
import sys
from typing import List, Optional, Sequence

import torch

from skinformer.config import CfgNode, get_cfg
from skinformer.utils import comm
from skinformer.utils.collect_env import collect_env_info
from skinformer.utils.env import seed_all_rng
from skinformer.utils.file_io import PathManager
from skinformer.utils.logger import setup_logger

__all__ = [
    "default_argument_parser",
    "setup_cfg",
    "check_cfg",
    "OutputDirError",
    "earlier_run_files",
    "prepare_output_dir",
    "register_config_datasets",
    "default_setup",
    "check_cfg_against_metadata",
]


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
