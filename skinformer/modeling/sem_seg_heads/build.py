from typing import Dict

import torch.nn as nn

from skinformer.layers import ShapeSpec
from skinformer.utils.registry import Registry

__all__ = ["SEM_SEG_HEAD_REGISTRY", "build_sem_seg_head"]

SEM_SEG_HEAD_REGISTRY = Registry("SEM_SEG_HEAD")
SEM_SEG_HEAD_REGISTRY.__doc__ = """
Registry for per-pixel semantic segmentation heads (used by ``PerPixelSegmentor``).

Each entry is called as ``obj(cfg, input_shape: Dict[str, ShapeSpec])`` (the backbone's
``output_shape()``) and returns an ``nn.Module`` with an integer attribute ``common_stride`` whose
``forward(features: Dict[str, Tensor B×C×H/s×W/s]) -> Tensor B×(NUM_CLASSES+1)×H/common_stride×W/common_stride``
returns logits; the last channel is "no class" (background when it is not one of the classes).
The name is read from ``cfg.MODEL.SEM_SEG_HEAD.NAME``.
"""


def build_sem_seg_head(cfg, input_shape: Dict[str, ShapeSpec]) -> nn.Module:
    """Build the per-pixel head named by ``cfg.MODEL.SEM_SEG_HEAD.NAME``."""
    name = cfg.MODEL.SEM_SEG_HEAD.NAME
    head = SEM_SEG_HEAD_REGISTRY.get(name, config_key="MODEL.SEM_SEG_HEAD.NAME")
    missing = [f for f in cfg.MODEL.SEM_SEG_HEAD.IN_FEATURES if f not in input_shape]
    if missing:
        raise ValueError(
            f"MODEL.SEM_SEG_HEAD.IN_FEATURES {missing} are not produced by the backbone "
            f"'{cfg.MODEL.BACKBONE.NAME}' (it outputs {sorted(input_shape)})"
        )
    return head(cfg, input_shape)
