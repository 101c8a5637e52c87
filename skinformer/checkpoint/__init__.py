"""Checkpointing: atomic, weights_only-safe saves; resume with fallback; foreign weight conversion."""
from .checkpointer import DetectionCheckpointer, atomic_torch_save, make_weights_only_safe
from .conversion import (
    CheckpointError,
    CorruptCheckpointError,
    UnsafeCheckpointError,
    align_and_update_state_dicts,
    load_pretrained_backbone,
    read_weights_file,
    unwrap_state_dict,
)
