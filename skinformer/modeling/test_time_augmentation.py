"""Test-time augmentation for every meta-architecture (``TEST.AUG``).

:class:`SegmentorWithTTA` wraps a model in eval mode. For each input dict it resizes the image so
its shortest edge is each of ``TEST.AUG.MIN_SIZES`` (longest at most ``TEST.AUG.MAX_SIZE``; the
rounding of :class:`~skinformer.data.transforms.ResizeShortestEdge`) or, for configs that squash
every image to ``INPUT.FIXED_SIZE`` (H, W), squashes it to that size scaled so its shorter side is
each of the sizes (the aspect ratio the model was trained at, not the image's), adds horizontally
(``TEST.AUG.FLIP``), vertically (``TEST.AUG.VFLIP``) and doubly flipped copies, runs the model on
the copies of one scale as one batch, flips the ``sem_seg`` score maps back and averages them.
Every meta-architecture returns its scores at the original ``height × width`` and as
probabilities (softmax / sigmoid / mask-classification scores), so the average is taken in
probability space at the original resolution.

The wrapped model sees the image it is given: the test mapper and :class:`DefaultPredictor` skip
their own resize when ``TEST.AUG.ENABLED`` (see :func:`skinformer.data.transforms.build_augmentation`),
so every scale is resized from the original pixels.

Instance outputs are not merged across augmentations (that needs box / mask voting): an
``instances`` field is taken from the first augmentation (first scale, not flipped).
"""
import logging
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn

from skinformer.config import configurable
from skinformer.data.transforms import Resize, ResizeShortestEdge, ResizeTransform, fixed_size

__all__ = ["SegmentorWithTTA", "build_inference_model"]

logger = logging.getLogger(__name__)

#: (flip horizontally, flip vertically) of each copy; the identity is always first.
Flip = Tuple[bool, bool]


def _flip(t: torch.Tensor, flip: Flip) -> torch.Tensor:
    """Flip the last two dims of ``...×H×W`` (a flip is its own inverse)."""
    dims = [d for d, on in ((-1, flip[0]), (-2, flip[1])) if on]
    return t.flip(dims) if dims else t


class SegmentorWithTTA(nn.Module):
    """Multi-scale + flip test-time augmentation around any meta-architecture.

    Args:
        model: a meta-architecture (``list[dict] -> list[dict]`` in eval mode).
        min_sizes: shortest-edge lengths of the scales.
        max_size: longest edge at most this.
        hflip, vflip: add horizontally / vertically flipped copies (both: also the doubly flipped one).
        fixed_size: ``(H, W)`` of a model trained on squashed images (``INPUT.FIXED_SIZE``): scale
            ``s`` squashes every image to ``(H, W) * s / min(H, W)`` whatever its aspect ratio
            (``max_size`` is then not used); ``None``: keep the aspect ratio.

    Input: the model's eval input dicts (``image`` uint8 ``3×h×w``, ``height``, ``width`` = the
    original size). Output: per image the model's dict with ``sem_seg`` (``K×height×width``)
    replaced by the mean over ``len(min_sizes) × len(flips)`` augmented copies.
    """

    @configurable
    def __init__(self, model: nn.Module, *, min_sizes: Sequence[int], max_size: int, hflip: bool = True,
                 vflip: bool = False, fixed_size: Optional[Sequence[int]] = None):
        super().__init__()
        min_sizes = tuple(int(s) for s in min_sizes)
        if not min_sizes or min(min_sizes) <= 0:
            raise ValueError(f"TEST.AUG.MIN_SIZES must be positive sizes, got {min_sizes}")
        if int(max_size) <= 0:
            raise ValueError(f"TEST.AUG.MAX_SIZE must be > 0, got {max_size}")
        self.model = model
        # mirror the wrapped model, so inference_context() restores ITS mode afterwards
        self.training = model.training
        self.min_sizes = min_sizes
        self.max_size = int(max_size)
        self.fixed_size = None if fixed_size is None else (int(fixed_size[0]), int(fixed_size[1]))
        self.flips: List[Flip] = [(False, False)]
        if hflip:
            self.flips.append((True, False))
        if vflip:
            self.flips.append((False, True))
        if hflip and vflip:
            self.flips.append((True, True))
        self._warned_instances = False

    @classmethod
    def from_config(cls, cfg, model):
        """Keyword arguments from ``cfg.TEST.AUG`` around ``model``; empty ``MIN_SIZES`` is the plain
        test scale (``INPUT.MIN_SIZE_TEST`` / ``MAX_SIZE_TEST``, or the shorter side of ``INPUT.FIXED_SIZE``)."""
        aug, fixed = cfg.TEST.AUG, fixed_size(cfg)
        if aug.MIN_SIZES:
            min_sizes, max_size = aug.MIN_SIZES, aug.MAX_SIZE
        else:
            min_sizes = (min(fixed),) if fixed else (cfg.INPUT.MIN_SIZE_TEST,)
            max_size = cfg.INPUT.MAX_SIZE_TEST
        return {"model": model, "min_sizes": min_sizes, "max_size": max_size, "hflip": aug.FLIP,
                "vflip": aug.VFLIP, "fixed_size": fixed}

    @property
    def num_augmentations(self) -> int:
        """Number of scales times number of flips."""
        return len(self.min_sizes) * len(self.flips)

    def output_shape(self, h: int, w: int, short: int) -> Tuple[int, int]:
        """``(h', w')`` of an ``h×w`` image at scale ``short``."""
        if self.fixed_size is None:
            return ResizeShortestEdge.get_output_shape(h, w, short, self.max_size)
        fh, fw = self.fixed_size
        return int(round(fh * short / min(fh, fw))), int(round(fw * short / min(fh, fw)))

    def _resize(self, image: torch.Tensor, short: int) -> torch.Tensor:
        """``3×h×w`` uint8 -> ``3×h'×w'`` uint8, resampled as the test mapper does (area when
        shrinking a fixed-size squash, bilinear otherwise)."""
        h, w = image.shape[-2:]
        new_h, new_w = self.output_shape(h, w, short)
        if (new_h, new_w) == (h, w):
            return image
        hwc = np.ascontiguousarray(image.permute(1, 2, 0).cpu().numpy())
        if self.fixed_size is None:
            out = ResizeTransform(h, w, new_h, new_w).apply_image(hwc)
        else:
            out = Resize((new_h, new_w)).get_transform(hwc, rng=None).apply_image(hwc)
        return torch.from_numpy(np.ascontiguousarray(out.transpose(2, 0, 1)))

    def forward(self, batched_inputs: List[Dict]) -> List[Dict]:
        """Per image, the wrapped model's output with ``sem_seg`` averaged over all scales and flips
        (instances from the first one). Raises ``RuntimeError`` when the wrapped model is in training
        mode (its mode, not the wrapper's, decides: callers put the model they hold in eval mode)."""
        if self.model.training:
            raise RuntimeError("SegmentorWithTTA is for inference; train the wrapped model itself")
        return [self._inference_one(x) for x in batched_inputs]

    @torch.no_grad()
    def _inference_one(self, x: Dict) -> Dict:
        image = x["image"]
        h, w = image.shape[-2:]
        out_h, out_w = int(x.get("height", h)), int(x.get("width", w))
        result, total = None, None
        for short in self.min_sizes:
            resized = self._resize(image, short)
            copies = [{"image": _flip(resized, f).contiguous(), "height": out_h, "width": out_w} for f in self.flips]
            for flip, out in zip(self.flips, self.model(copies)):
                if result is None:
                    result = dict(out)
                if "sem_seg" in out:
                    scores = _flip(out["sem_seg"].float(), flip)
                    total = scores.clone() if total is None else total.add_(scores)
        if total is not None:
            result["sem_seg"] = total / self.num_augmentations
        if "instances" in result and self.num_augmentations > 1 and not self._warned_instances:
            self._warned_instances = True
            logger.warning("TEST.AUG: instance outputs are not merged across augmentations; the instances of "
                           "the first scale (%d, not flipped) are returned", self.min_sizes[0])
        return result


def build_inference_model(cfg, model: nn.Module) -> nn.Module:
    """``model`` wrapped in :class:`SegmentorWithTTA` when ``TEST.AUG.ENABLED``, else ``model``."""
    if not cfg.TEST.AUG.ENABLED:
        return model
    tta = SegmentorWithTTA(cfg, model)
    logger.info("Test-time augmentation: scales %s (max %d), flips %s: %d passes per image",
                list(tta.min_sizes), tta.max_size, tta.flips, tta.num_augmentations)
    return tta
