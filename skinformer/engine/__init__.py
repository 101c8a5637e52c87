"""Training engine: the loop and its hooks, the default workflow, and multi-process launch.

``setup`` holds the command line and per-process set-up, ``defaults`` the :class:`DefaultTrainer`,
``predictor`` the :class:`DefaultPredictor`; every name is also importable from ``defaults``.
"""
from . import hooks
from .defaults import DefaultTrainer, create_ddp_model, default_writers
from .launch import launch
from .predictor import DefaultPredictor
from .setup import (OutputDirError, check_cfg, check_cfg_against_metadata, default_argument_parser, default_setup,
                    prepare_output_dir, setup_cfg)
from .train_loop import AMPTrainer, HookBase, SimpleTrainer, TrainerBase
