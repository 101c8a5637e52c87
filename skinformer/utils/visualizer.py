"""Overlay images of predictions (and ground-truth contours) for quick inspection.

Prediction pixels are blended with their class colour (the metadata ``palette``); ground-truth
regions are outlined with the complementary colour so they stay visible over the fill.
Decision rules are the dataset's :class:`~skinformer.structures.LabelSpace` (threshold
``TEST.THRESHOLD``, 0.5 by default):

* semantic scores ``K×H×W``: if the dataset's background is a class, argmax over K; otherwise a
  pixel gets ``argmax_c`` only where ``max_c score > threshold``, else it is background (label K,
  not drawn);
* multi-label scores: every class thresholded on its own (overlapping fills);
* instances: ``pred_masks`` with ``scores > threshold``, coloured by ``pred_classes``.
"""
import colorsys
import os
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch

from skinformer.structures.label_space import LabelSpace

__all__ = [
    "default_palette", "class_palette",
    "label_map_to_masks",
    "overlay_masks",
    "draw_contours",
    "Visualizer",
    "save_image",
]

Color = Tuple[int, int, int]


def default_palette(num_classes: int) -> List[Color]:
    """Distinct, deterministic RGB colours (hue wheel)."""
    out = []
    for i in range(max(num_classes, 1)):
        r, g, b = colorsys.hsv_to_rgb((i * 0.618033988749895 + 0.05) % 1.0, 0.85, 1.0)
        out.append((int(r * 255), int(g * 255), int(b * 255)))
    return out


def class_palette(metadata, num_classes: int) -> List[Color]:
    """RGB colours for ``num_classes`` classes (at least one): the metadata's ``palette`` (all of
    it) first, then :func:`default_palette` for the classes it does not cover."""
    given = [tuple(int(v) for v in c) for c in (metadata.get("palette", None) or [])]
    return given + default_palette(num_classes)[len(given):]


def _to_numpy(x) -> np.ndarray:
    return x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def label_map_to_masks(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """``H×W`` labels -> bool ``num_classes×H×W`` (background / ignore give no mask)."""
    labels = np.asarray(labels)
    return np.stack([labels == c for c in range(num_classes)], axis=0) if num_classes else np.zeros((0, *labels.shape), bool)


def overlay_masks(image: np.ndarray, masks: np.ndarray, colors: Sequence[Color], alpha: float = 0.5) -> np.ndarray:
    """Blend ``colors[i]`` into ``image`` (``H×W×3`` uint8 RGB) where ``masks[i]`` (``N×H×W``)."""
    out = image.astype(np.float32).copy()
    for m, color in zip(masks, colors):
        if m.any():
            out[m] = out[m] * (1 - alpha) + np.asarray(color, np.float32) * alpha
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def draw_contours(image: np.ndarray, masks: np.ndarray, colors: Sequence[Color], thickness: int = 2) -> np.ndarray:
    """Draw the outline of each mask in ``masks`` (``N×H×W`` bool) on a copy of ``image``."""
    out = np.ascontiguousarray(image.copy())
    for m, color in zip(masks, colors):
        if not m.any():
            continue
        contours, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(out, contours, -1, tuple(int(c) for c in color), thickness)
    return out


def _complement(color: Color) -> Color:
    return tuple(255 - int(c) for c in color)


def _resize_nearest(arr: np.ndarray, hw: Tuple[int, int]) -> np.ndarray:
    if arr.shape[-2:] == tuple(hw):
        return arr
    if arr.ndim == 2:
        return cv2.resize(arr.astype(np.int32), (hw[1], hw[0]), interpolation=cv2.INTER_NEAREST).astype(arr.dtype)
    return np.stack([_resize_nearest(a, hw) for a in arr], axis=0)


class Visualizer:
    """Draw model outputs over the original image using a dataset's metadata.

    Args:
        metadata: a :class:`skinformer.data.catalog.Metadata` (``classes``, optionally ``palette``
            and the label-space fields), or a :class:`~skinformer.structures.LabelSpace`.
        multi_label: treat ``sem_seg`` outputs as independent per-class maps.
        alpha: fill opacity.
        threshold: decision threshold (``TEST.THRESHOLD``); None keeps the label space's
            (0.5 for metadata).
    """

    def __init__(self, metadata, multi_label: bool = False, alpha: float = 0.5, threshold: Optional[float] = None):
        source = metadata if hasattr(metadata, "get") else vars(metadata)
        self.classes = list(source.get("classes", []) or [])
        self.label_space = LabelSpace.from_metadata(source, classes=self.classes, threshold=threshold,
                                                    multi_label=True if multi_label else None)
        self.num_classes = len(self.classes)
        self.palette = class_palette(source, self.num_classes)
        self.ignore_label = self.label_space.ignore_label
        self.multi_label = self.label_space.multi_label
        self.alpha = alpha
        self.threshold = self.label_space.threshold

    def prediction_masks(self, prediction: Dict, hw: Tuple[int, int]) -> Tuple[np.ndarray, List[Color]]:
        """Bool ``N×H×W`` masks and their colours for a model output dict."""
        if "sem_seg" in prediction:
            masks = self.label_space.masks_from_scores(torch.as_tensor(_to_numpy(prediction["sem_seg"]))).numpy()
            colors = [self.palette[i % len(self.palette)] for i in range(masks.shape[0])]
        elif "instances" in prediction:
            inst = prediction["instances"]
            keep = _to_numpy(inst.scores) > self.threshold if inst.has("scores") else np.ones(len(inst), bool)
            masks = _to_numpy(inst.pred_masks)[keep].astype(bool)
            classes = _to_numpy(inst.pred_classes)[keep].astype(int) if inst.has("pred_classes") else np.zeros(len(masks), int)
            colors = [self.palette[c % len(self.palette)] for c in classes]
        else:
            raise KeyError(f"Cannot visualise an output with keys {sorted(prediction)}: expected 'sem_seg' or 'instances'")
        if masks.size:
            masks = _resize_nearest(masks.astype(np.uint8), hw).astype(bool)
        return masks, colors

    def gt_masks(self, gt) -> np.ndarray:
        """Ground truth as bool ``K×H×W`` from what users have at hand:

        * a mask file path (decoded with the dataset's encoding: 0/255, 0/1, index, grey values...);
        * ``K×H×W`` per-class masks;
        * an ``H×W`` label map (``0..K-1`` classes, ``K`` background-not-a-class, ignore label);
        * an ``H×W`` raw binary mask file's pixels, values ``{0, 255}`` (255 = lesion) for binary
          data: read as a mask, not as a label map (where 0 would be the lesion class).

        Values that are none of these raise a ``ValueError`` listing them.
        """
        if isinstance(gt, (str, os.PathLike)):
            gt = self.label_space.decode(os.fspath(gt))
        gt = _to_numpy(gt)
        if gt.ndim == 3:
            return gt.astype(bool)
        values = set(np.unique(gt).tolist())
        space = self.label_space
        if (space.mask_encoding == "binary" and not space.background_is_class and self.num_classes == 1
                and 255 in values and values <= {0, 255}):
            return (gt == 255)[None]
        allowed = set(range(space.num_labels)) | {space.ignore_label}
        if not values <= allowed:
            raise ValueError(f"Ground-truth mask values {sorted(values)[:10]} are not labels 0..{space.num_labels - 1} "
                             f"(ignore {space.ignore_label}) of classes {self.classes}; pass the mask file path to "
                             f"decode it with the dataset's encoding")
        return label_map_to_masks(gt, self.num_classes)

    def draw(self, image: np.ndarray, prediction: Dict, gt=None) -> np.ndarray:
        """Overlay ``prediction`` on ``image`` (``H×W×3`` uint8 RGB, original size) and outline ``gt``."""
        image = np.asarray(image)
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=2)
        hw = image.shape[:2]
        masks, colors = self.prediction_masks(prediction, hw)
        out = overlay_masks(image, masks, colors, self.alpha)
        if gt is not None:
            g = self.gt_masks(gt)
            if g.shape[-2:] != hw:
                g = _resize_nearest(g.astype(np.uint8), hw).astype(bool)
            out = draw_contours(out, g, [_complement(self.palette[i % len(self.palette)]) for i in range(len(g))],
                                thickness=max(1, round(max(hw) / 300)))
        return out


def save_image(path: str, image_rgb: np.ndarray) -> None:
    """Write an RGB uint8 image (PNG/JPEG by extension); raises naming the path on failure."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if not cv2.imwrite(path, cv2.cvtColor(np.ascontiguousarray(image_rgb), cv2.COLOR_RGB2BGR)):
        raise OSError(f"Could not write image '{path}'")
