"""Interactive tools: the segmentation web demo (:mod:`.app`) and its model / rendering logic
(:mod:`.segment`), and the mask annotation tool (:mod:`.annotate`). The UI modules import gradio (the ``[demo]`` extra) only when called."""
from .segment import (
    DemoModel, class_areas, class_masks, compare_metrics, encode_mask, load_model, parse_colors, render,
)

__all__ = [
    "DemoModel", "class_areas", "class_masks", "compare_metrics", "encode_mask", "load_model",
    "parse_colors", "render",
]
