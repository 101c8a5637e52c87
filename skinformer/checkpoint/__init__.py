"""Checkpointing: atomic, weights_only-safe saves; resume with fallback; foreign weight conversion."""
from .checkpointer import (
    CheckpointSaveError,
    DetectionCheckpointer,
    atomic_torch_save,
    make_weights_only_safe,
    remove_stale_temporary_files,
    strip_checkpoint,
)
from .conversion import (
    CheckpointError,
    CorruptCheckpointError,
    IncompatibleCheckpointError,
    UnsafeCheckpointError,
    align_and_update_state_dicts,
    load_pretrained_backbone,
    read_weights_file,
    unwrap_state_dict,
)
