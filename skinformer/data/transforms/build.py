"""Augmentation pipelines from the config (``INPUT.*`` keys, documented in ``config/defaults.py``)."""
import logging
from typing import List, Optional, Tuple

import numpy as np


from .augmentation import Augmentation
from .augmentation_impl import (
    ColorAugSSD,
    ElasticTransform,
    FixedSizeCrop,
    RandomCrop,
    RandomCropCategoryAreaConstraint,
    RandomFlip,
    RandomRotation,
    RandomShear,
    Resize,
    ResizeScale,
    ResizeShortestEdge,
)

from .extra_augmentations import (
    RandomColorJitter,
    RandomGridDistortion,
    RandomLowResCrop,
    RandomOpticalDistortion,
    RandomShrinkPaste,
    RandomSharpen,
)

__all__ = ["build_augmentation", "build_lsj_augmentation", "build_flip_augmentation", "fixed_size",
           "build_geometric_augmentation", "build_photometric_augmentation",
           "keeps_original_resolution"]

# INPUT.RANDOM_FLIP value -> flips to apply (each with p 0.5)
_FLIPS = {
    "none": (),
    "horizontal": (dict(horizontal=True, vertical=False),),
    "vertical": (dict(horizontal=False, vertical=True),),
    "both": (dict(horizontal=True, vertical=False), dict(horizontal=False, vertical=True)),
}


def build_flip_augmentation(cfg) -> List[Augmentation]:
    """Flips selected by ``INPUT.RANDOM_FLIP`` ("none", "horizontal", "vertical", "both"), each p 0.5."""
    mode = str(cfg.INPUT.RANDOM_FLIP).lower()
    if mode not in _FLIPS:
        raise ValueError(f"INPUT.RANDOM_FLIP = '{cfg.INPUT.RANDOM_FLIP}' is not valid; expected one of {list(_FLIPS)}")
    return [RandomFlip(0.5, **kw) for kw in _FLIPS[mode]]


def fixed_size(cfg) -> Optional[Tuple[int, int]]:
    """``INPUT.FIXED_SIZE`` as ``(H, W)``, or ``None`` when it is empty (off)."""
    value = tuple(cfg.INPUT.FIXED_SIZE)
    if not value:
        return None
    if len(value) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
        raise ValueError(f"INPUT.FIXED_SIZE = {cfg.INPUT.FIXED_SIZE!r} is not valid; expected () (off) or two "
                         "positive ints (H, W), e.g. (256, 256)")
    return value


def keeps_original_resolution(cfg) -> bool:
    """Whether inference inputs keep their original pixels: test-time augmentation
    (``TEST.AUG.ENABLED``) resizes each copy itself, and ``TEST.SLIDING_WINDOW.ORIGINAL_RESOLUTION``
    runs the windows over the original image."""
    sw = cfg.TEST.SLIDING_WINDOW
    return bool(cfg.TEST.AUG.ENABLED or (sw.ENABLED and sw.ORIGINAL_RESOLUTION))


def build_augmentation(cfg, is_train: bool) -> List[Augmentation]:
    """The semantic-segmentation pipeline.

    Training, in order (each step only when enabled):
    ``RandomRotation`` (INPUT.ROTATION.*, prob per sample) -> ``ResizeShortestEdge``
    (MIN_SIZE_TRAIN, MAX_SIZE_TRAIN, MIN_SIZE_TRAIN_SAMPLING) -> crop (INPUT.CROP.*, category-area
    constrained when SINGLE_CATEGORY_MAX_AREA < 1) -> ``RandomShear`` (INPUT.SHEAR.*) ->
    ``ElasticTransform`` (INPUT.ELASTIC.*) -> ``ColorAugSSD`` (INPUT.COLOR_AUG_SSD) -> flips
    (INPUT.RANDOM_FLIP). Filled label pixels get MODEL.SEM_SEG_HEAD.IGNORE_VALUE.
    The original per-pixel projects' augmentations hook in: ``RandomLowResCrop`` (INPUT.LOW_RES_CROP) before the
    crop, then after the elastic step grid / barrel / pincushion distortion, shrink-and-paste
    (:func:`build_geometric_augmentation`), sharpening and colour jitter
    (:func:`build_photometric_augmentation`); INPUT.ROTATION.ANGLES picks from a list of angles.

    Test: ``ResizeShortestEdge(MIN_SIZE_TEST, MAX_SIZE_TEST)`` only (nothing if MIN_SIZE_TEST is 0,
    or when :func:`keeps_original_resolution`).
    Padding to INPUT.SIZE_DIVISIBILITY is done by the mappers (:class:`PadToDivisible`).

    With ``INPUT.FIXED_SIZE`` (H, W), ``Resize(FIXED_SIZE)`` replaces both shortest-edge resizes;
    in training it comes FIRST, so the rotation and everything after work on the small fixed-size
    uint8 image instead of the full-size one, and a rotation with ``EXPAND`` is followed by a second
    ``Resize(FIXED_SIZE)`` (the expanded canvas is brought back to the training size, a zoom-out).
    """
    inp = cfg.INPUT
    fixed = fixed_size(cfg)
    if not is_train:
        if keeps_original_resolution(cfg):
            return []
        if fixed is not None:
            return [Resize(fixed)]
        return [ResizeShortestEdge(inp.MIN_SIZE_TEST, inp.MAX_SIZE_TEST, "choice")] if inp.MIN_SIZE_TEST > 0 else []

    ignore = int(cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE)
    augs: List[Augmentation] = []
    if fixed is not None:
        rotation = _build_rotation(cfg, ignore)
        augs.append(Resize(fixed))
        augs.extend(rotation)
        if rotation and inp.ROTATION.EXPAND:
            augs.append(Resize(fixed))
    else:
        augs.extend(_build_rotation(cfg, ignore))
        augs.append(ResizeShortestEdge(inp.MIN_SIZE_TRAIN, inp.MAX_SIZE_TRAIN, inp.MIN_SIZE_TRAIN_SAMPLING))
    if inp.LOW_RES_CROP.PROB > 0:
        augs.append(RandomLowResCrop(inp.LOW_RES_CROP.SCALE, inp.LOW_RES_CROP.SIZE, prob=inp.LOW_RES_CROP.PROB,
                                     seg_fill=ignore))
    if inp.CROP.ENABLED:
        if inp.CROP.SINGLE_CATEGORY_MAX_AREA < 1.0:
            augs.append(RandomCropCategoryAreaConstraint(inp.CROP.TYPE, inp.CROP.SIZE,
                                                         inp.CROP.SINGLE_CATEGORY_MAX_AREA, ignore))
        else:
            augs.append(RandomCrop(inp.CROP.TYPE, inp.CROP.SIZE))
    if inp.SHEAR.PROB > 0:
        augs.append(RandomShear(inp.SHEAR.MAX, prob=inp.SHEAR.PROB, seg_fill=ignore))
    if inp.ELASTIC.PROB > 0:
        augs.append(ElasticTransform(inp.ELASTIC.ALPHA, inp.ELASTIC.SIGMA, prob=inp.ELASTIC.PROB))
    augs.extend(build_geometric_augmentation(cfg, ignore))
    augs.extend(build_photometric_augmentation(cfg))
    if inp.COLOR_AUG_SSD:
        augs.append(ColorAugSSD(img_format=inp.FORMAT))
    augs.extend(build_flip_augmentation(cfg))
    return augs


def build_geometric_augmentation(cfg, ignore: int) -> List[Augmentation]:
    """Grid / barrel / pincushion distortion and shrink-and-paste (INPUT.GRID_DISTORTION,
    INPUT.BARREL_DISTORTION, INPUT.PINCUSHION_DISTORTION, INPUT.SHRINK), each with its own PROB."""
    inp = cfg.INPUT
    augs: List[Augmentation] = []
    if inp.GRID_DISTORTION.PROB > 0:
        augs.append(RandomGridDistortion(inp.GRID_DISTORTION.NUM_STEPS, inp.GRID_DISTORTION.LIMIT,
                                         prob=inp.GRID_DISTORTION.PROB, seg_fill=ignore))
    for kind, node in (("barrel", inp.BARREL_DISTORTION), ("pincushion", inp.PINCUSHION_DISTORTION)):
        if node.PROB > 0:
            augs.append(RandomOpticalDistortion(kind, node.LIMIT, prob=node.PROB, seg_fill=ignore))
    if inp.SHRINK.PROB > 0:
        augs.append(RandomShrinkPaste(inp.SHRINK.FACTORS, prob=inp.SHRINK.PROB))
    return augs


def build_photometric_augmentation(cfg) -> List[Augmentation]:
    """Sharpening and colour jitter with set magnitudes (INPUT.SHARPEN, INPUT.COLOR_JITTER); image only."""
    inp = cfg.INPUT
    augs: List[Augmentation] = []
    if inp.SHARPEN.PROB > 0:
        augs.append(RandomSharpen(inp.SHARPEN.ALPHA, inp.SHARPEN.LIGHTNESS, prob=inp.SHARPEN.PROB))
    cj = inp.COLOR_JITTER
    if cj.PROB > 0:
        augs.append(RandomColorJitter(cj.BRIGHTNESS, cj.CONTRAST, cj.SATURATION, cj.HUE, prob=cj.PROB))
    return augs


def _build_rotation(cfg, ignore: int) -> List[Augmentation]:
    """Rotation with probability ``INPUT.ROTATION.PROB`` decided per sample, or — with
    ``INPUT.ROTATION.ONCE_PER_RUN`` (the original SiMaskFormer's behaviour, difference D2 in
    ``docs/simaskformer.md``) — decided once when the mapper is built, so a whole run either always
    or never rotates."""
    inp = cfg.INPUT
    prob = inp.ROTATION.PROB
    if prob <= 0:
        return []
    if inp.ROTATION.ONCE_PER_RUN:  # D2
        rng = np.random.default_rng(None if cfg.SEED < 0 else cfg.SEED)
        prob = 1.0 if rng.random() < prob else 0.0
        logging.getLogger(__name__).info(
            "INPUT.ROTATION.ONCE_PER_RUN: rotation is %s for this whole run", "ON" if prob else "OFF")
        if prob == 0.0:
            return []
    if inp.ROTATION.ANGLES:
        # a list of angles (e.g. [0, 90, 180, 270]): one of them per rotated sample
        return [RandomRotation(inp.ROTATION.ANGLES, expand=inp.ROTATION.EXPAND, sample_style="choice", prob=prob,
                               seg_fill=ignore)]
    return [RandomRotation(inp.ROTATION.ANGLE, expand=inp.ROTATION.EXPAND, prob=prob, seg_fill=ignore)]


def build_lsj_augmentation(cfg, is_train: bool) -> List[Augmentation]:
    """Large-scale jitter (instance recipes): rotation (if enabled), flips, ``ResizeScale(MIN_SCALE,
    MAX_SCALE, IMAGE_SIZE, IMAGE_SIZE)`` and ``FixedSizeCrop(IMAGE_SIZE)`` padded with 128 / ignore.
    At test time the same as :func:`build_augmentation`. With ``INPUT.FIXED_SIZE`` the image is first
    squashed to it (the aspect ratio the test-time ``Resize`` gives), then jittered as usual."""
    if not is_train:
        return build_augmentation(cfg, is_train=False)
    inp = cfg.INPUT
    ignore = int(cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE)
    fixed = fixed_size(cfg)
    augs: List[Augmentation] = [Resize(fixed)] if fixed is not None else []
    augs.extend(_build_rotation(cfg, ignore))
    augs.extend(build_flip_augmentation(cfg))
    augs.append(ResizeScale(inp.MIN_SCALE, inp.MAX_SCALE, inp.IMAGE_SIZE, inp.IMAGE_SIZE))
    augs.append(FixedSizeCrop((inp.IMAGE_SIZE, inp.IMAGE_SIZE), pad_value=128.0, seg_pad_value=ignore))
    if inp.COLOR_AUG_SSD:
        augs.append(ColorAugSSD(img_format=inp.FORMAT))
    return augs
