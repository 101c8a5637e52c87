"""Training engine: the loop and its hooks, the default workflow, and multi-process launch."""
from . import hooks
from .defaults import (
    DefaultPredictor,
    DefaultTrainer,
    OutputDirError,
    check_cfg,
    check_cfg_against_metadata,
    create_ddp_model,
    default_argument_parser,
    default_setup,
    default_writers,
    prepare_output_dir,
    setup_cfg,
)
from .launch import launch
from .train_loop import AMPTrainer, HookBase, SimpleTrainer, TrainerBase
