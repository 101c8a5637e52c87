"""What the web demo does, without the UI: load a model, turn its output into per-class masks,
draw them, measure them and compare them with a ground truth.

Masks are bool ``K×H×W`` (one per predicted class, at the image's size). The decision rule is
the visualiser's (:class:`skinformer.utils.visualizer.Visualizer`) with an adjustable threshold.
"""
import os
import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from skinformer.structures.label_space import LabelSpace
from skinformer.utils.visualizer import (
    Visualizer, class_palette, draw_contours, label_map_to_masks, overlay_masks,
)

__all__ = [
    "DemoModel", "load_model", "class_masks", "encode_mask", "render", "class_areas", "parse_colors",
    "compare_metrics", "RENDER_STYLES",
]

Color = Tuple[int, int, int]


@dataclass
class DemoModel:
    """A loaded predictor with the colours the demo draws its classes in. The label space
    (classes, decision rule, mask encoding) is the predictor's."""

    name: str
    predictor: object  # DefaultPredictor: RGB/BGR H×W×3 uint8 -> output dict
    palette: List[Color]  # one RGB colour per class

    @property
    def label_space(self) -> LabelSpace:
        """The predictor's label space (its test dataset's, with ``TEST.THRESHOLD``)."""
        return self.predictor.label_space

    @property
    def classes(self) -> List[str]:
        """Class names, in label order."""
        return list(self.label_space.classes)

    def __call__(self, image_rgb: np.ndarray) -> Dict:
        fmt = self.predictor.cfg.INPUT.FORMAT
        return self.predictor(image_rgb[:, :, ::-1].copy() if fmt == "BGR" else image_rgb)


def load_model(config_file: str, opts: Sequence[str] = (), name: Optional[str] = None) -> DemoModel:
    """Build a :class:`DefaultPredictor` from a config file, ``KEY VALUE`` overrides and
    ``MODEL.WEIGHTS`` (empty weights: an error, the demo would show noise)."""
    from skinformer.engine.defaults import DefaultPredictor, register_config_datasets
    from skinformer.config import get_cfg

    if not os.path.isfile(config_file):
        raise FileNotFoundError(f"Config file '{config_file}' does not exist")
    cfg = get_cfg()
    cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(opts))
    cfg.freeze()
    if not cfg.MODEL.WEIGHTS:
        raise ValueError(f"MODEL.WEIGHTS is empty for '{config_file}': pass the trained weights "
                         "(e.g. MODEL.WEIGHTS output/run/model_final.pth)")
    register_config_datasets(cfg)
    predictor = DefaultPredictor(cfg)
    k = predictor.label_space.num_classes
    label = name or f"{os.path.splitext(os.path.basename(config_file))[0]} ({os.path.basename(cfg.MODEL.WEIGHTS)})"
    return DemoModel(label, predictor, class_palette(predictor.metadata or {}, k)[:k])


def class_masks(model: DemoModel, output: Dict, hw: Tuple[int, int], threshold: float = 0.5) -> np.ndarray:
    """Bool ``K×H×W`` per-class masks of one model output (instances merged per class)."""
    masks, _ = Visualizer(model.label_space, threshold=threshold).prediction_masks(output, hw)
    if "instances" in output:
        inst = output["instances"]
        keep = inst.scores.detach().cpu().numpy() > threshold if inst.has("scores") else np.ones(len(inst), bool)
        cls = inst.pred_classes.detach().cpu().numpy()[keep] if inst.has("pred_classes") else np.zeros(len(masks), int)
        merged = np.zeros((len(model.classes), *hw), bool)
        for m, c in zip(masks, cls):
            merged[int(c)] |= m
        return merged
    return masks.astype(bool)


def encode_mask(masks: np.ndarray, label_space: LabelSpace) -> np.ndarray:
    """``K×H×W`` bool -> uint8 mask file: 0/255 for one class without a background class, else
    the class index, pixels of no mask getting the label space's ``background_label`` (``K``, or
    the background class's index); later classes win overlaps."""
    k, h, w = masks.shape
    if k != label_space.num_classes:
        raise ValueError(f"encode_mask: {k} masks for the {label_space.num_classes} classes {list(label_space.classes)}")
    if k == 1 and not label_space.background_is_class:
        return masks[0].astype(np.uint8) * 255
    if k > 255:
        raise ValueError(f"{k} classes do not fit an 8-bit index mask")
    labels = np.full((h, w), label_space.background_label, np.uint8)
    for c in range(k):
        labels[masks[c]] = c
    return labels


def _draw_fill(image, masks, colors, opacity, thickness):
    return overlay_masks(image, masks, colors, opacity)


def _draw_contour(image, masks, colors, opacity, thickness):
    return draw_contours(image, masks, colors, thickness)


def _draw_both(image, masks, colors, opacity, thickness):
    return draw_contours(overlay_masks(image, masks, colors, opacity), masks, colors, thickness)


RENDER_STYLES = {"fill": _draw_fill, "contour": _draw_contour, "fill + contour": _draw_both}


def render(image: np.ndarray, masks: np.ndarray, colors: Sequence[Color], opacity: float = 0.5,
           style: str = "fill", thickness: int = 0) -> np.ndarray:
    """Draw ``masks`` (``K×H×W``) over ``image`` (``H×W×3`` uint8 RGB) in ``style``."""
    if style not in RENDER_STYLES:
        raise ValueError(f"style must be one of {list(RENDER_STYLES)}, got '{style}'")
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must be in [0, 1], got {opacity}")
    thickness = thickness or max(1, round(max(image.shape[:2]) / 250))
    return RENDER_STYLES[style](image, masks, colors, float(opacity), thickness)


_HEX = re.compile(r"^#?([0-9a-fA-F]{6})$")


def parse_colors(text: str, default: Sequence[Color]) -> List[Color]:
    """``"#dc143c, #00ff00"`` -> RGB tuples, one per class; missing entries take ``default``."""
    colors = list(default)
    items = [t.strip() for t in (text or "").split(",") if t.strip()]
    if len(items) > len(colors):
        raise ValueError(f"{len(items)} colours given for {len(colors)} classes: '{text}'")
    for i, item in enumerate(items):
        m = _HEX.match(item)
        if not m:
            raise ValueError(f"Colour '{item}' is not a hex colour like #dc143c")
        v = m.group(1)
        colors[i] = (int(v[0:2], 16), int(v[2:4], 16), int(v[4:6], 16))
    return colors


def class_areas(masks: np.ndarray, classes: Sequence[str]) -> List[Tuple[str, int, float]]:
    """``(class, pixels, percent of the image)`` for each class mask in ``K×H×W``."""
    total = max(int(np.prod(masks.shape[1:])), 1)
    return [(name, int(m.sum()), 100.0 * float(m.sum()) / total) for name, m in zip(classes, masks)]


def compare_metrics(pred: np.ndarray, gt_labels: np.ndarray, classes: Sequence[str],
                    ignore_label: int = 255) -> List[Tuple[str, float, float, float]]:
    """Per-class ``(class, precision, recall, Dice)`` of ``pred`` (bool ``K×H×W``) against a decoded
    label map (``H×W``, :func:`skinformer.data.mask_io.read_sem_seg`); ignored pixels do not count."""
    from skinformer.evaluation.metrics import binary_confusion, pooled_binary_metrics

    if pred.shape[1:] != gt_labels.shape:
        raise ValueError(f"ground truth of size {gt_labels.shape} does not match the image {pred.shape[1:]}")
    gt = label_map_to_masks(gt_labels, len(classes))
    valid = torch.from_numpy(gt_labels != ignore_label)
    rows = []
    for name, p, g in zip(classes, pred, gt):
        m = pooled_binary_metrics(binary_confusion(torch.from_numpy(p), torch.from_numpy(g), valid))
        rows.append((name, float(m["precision"]), float(m["recall"]), float(m["dice"])))
    return rows
