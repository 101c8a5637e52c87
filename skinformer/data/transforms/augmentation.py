"""The augmentation API: random *policies* that produce deterministic fvcore transforms.

Usage in a mapper::

    from skinformer.data import transforms as T

    augs = T.AugmentationList([T.ResizeShortestEdge((256,), 1024), T.RandomFlip(prob=0.5)])
    rng = np.random.default_rng(dataset_dict["_aug_seed"])      # per-sample randomness
    aug_input, tfms = T.apply_augmentations(augs, image, sem_seg=sem_seg, masks=masks, rng=rng)
    image, sem_seg, masks = aug_input.image, aug_input.sem_seg, aug_input.masks
    # polygons / boxes of the same sample: tfms.apply_polygons(...), tfms.apply_box(...)

Rules:

* An :class:`Augmentation` draws every random number from the ``np.random.Generator`` it is
  given (never from global RNGs), so a sample's augmentation depends only on its seed: runs are
  reproducible independent of the number of loader workers and exactly resumable.
* ``get_transform(*inputs, rng)`` receives the attributes of :class:`AugInput` named in
  ``input_args`` (default ``("image",)``; ``("image", "sem_seg")`` for crops that look at labels)
  and returns an fvcore :class:`~fvcore.transforms.Transform` that is then applied to the image
  (``apply_image``), the label map (``apply_segmentation``, nearest), binary masks and boxes.
* Geometric transforms fill label-map pixels that come from outside the image (padding, rotated
  corners) with the ignore label. Binary masks (``masks``) are filled with ``False``; to know which
  pixels are padding, also pass a ``sem_seg`` (e.g. all zeros) and look for the ignore label.
"""
import inspect
import pprint
from typing import Any, List, Optional, Sequence, Tuple, Union

import numpy as np

from .transform import NoOpTransform, Transform, TransformList

__all__ = ["Augmentation", "AugmentationList", "AugInput", "RandomApply", "apply_augmentations", "as_generator"]


def as_generator(rng: Union[np.random.Generator, int, Sequence[int]]) -> np.random.Generator:
    """``rng`` itself if it is a Generator, else a Generator seeded with it (an int or int sequence)."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None:
        raise TypeError(
            "Augmentations need an explicit np.random.Generator (or an int seed): per-sample randomness "
            "must come from the loader's '_aug_seed', never from global RNG state"
        )
    return np.random.default_rng(rng)


class AugInput:
    """The data of one sample that augmentations read and transforms modify.

    Attributes:
        image: ``H×W×C`` uint8 (RGB) array.
        sem_seg: ``H×W`` integer label map or None.
        masks: ``N×H×W`` bool array (multi-label attribute masks, instance masks) or None.
        boxes: ``N×4`` float xyxy boxes (pixels) or None.
    """

    def __init__(self, image: np.ndarray, *, sem_seg: Optional[np.ndarray] = None,
                 masks: Optional[np.ndarray] = None, boxes: Optional[np.ndarray] = None):
        if not isinstance(image, np.ndarray) or image.ndim not in (2, 3):
            raise ValueError(f"AugInput.image must be an H×W or H×W×C numpy array, got {type(image)} "
                             f"{getattr(image, 'shape', '')}")
        h, w = image.shape[:2]
        if sem_seg is not None and sem_seg.shape[:2] != (h, w):
            raise ValueError(f"sem_seg shape {sem_seg.shape} does not match image shape {image.shape}")
        if masks is not None:
            masks = np.asarray(masks)
            if masks.ndim != 3 or masks.shape[1:] != (h, w):
                raise ValueError(f"masks must be N×H×W with H×W = {(h, w)}, got {masks.shape}")
        self.image = image
        self.sem_seg = sem_seg
        self.masks = masks
        self.boxes = boxes

    def transform(self, tfm: Transform) -> None:
        """Apply ``tfm`` in place to every field that is set."""
        self.image = tfm.apply_image(self.image)
        if self.sem_seg is not None:
            self.sem_seg = tfm.apply_segmentation(self.sem_seg)
        if self.masks is not None:
            h, w = self.image.shape[:2]
            if len(self.masks) == 0:
                self.masks = np.zeros((0, h, w), dtype=bool)
            else:
                # uint8 0/1 through the nearest path; filled pixels (ignore value) are != 1 -> False
                self.masks = np.stack([tfm.apply_segmentation(m.astype(np.uint8)) == 1 for m in self.masks])
        if self.boxes is not None:
            self.boxes = tfm.apply_box(np.asarray(self.boxes, dtype=np.float64).copy())

    def apply_augmentations(self, augmentations, rng) -> TransformList:
        """Apply ``augmentations`` in place with ``rng``; returns the :class:`TransformList` used."""
        return AugmentationList(augmentations)(self, rng)


class Augmentation:
    """A random policy: ``get_transform(*inputs, rng)`` -> a deterministic :class:`Transform`.

    Subclasses set ``input_args`` (names of :class:`AugInput` attributes passed to
    ``get_transform``) and draw ALL randomness from ``rng``.
    """

    input_args: Tuple[str, ...] = ("image",)

    def _init(self, params: Optional[dict] = None) -> None:
        if params:
            for k, v in params.items():
                if k != "self" and not k.startswith("_"):
                    setattr(self, k, v)

    def get_transform(self, *args, rng: np.random.Generator) -> Transform:
        """Draw a :class:`Transform` from ``rng`` for the given inputs (named by ``input_args``).
        Subclasses must implement it."""
        raise NotImplementedError

    def __call__(self, aug_input: AugInput, rng) -> Transform:
        """Draw a transform for ``aug_input``, apply it in place and return it."""
        rng = as_generator(rng)
        args = [getattr(aug_input, name) for name in self.input_args]
        tfm = self.get_transform(*args, rng=rng)
        if not isinstance(tfm, Transform):
            raise TypeError(f"{type(self).__name__}.get_transform must return an fvcore Transform, got {type(tfm)}")
        aug_input.transform(tfm)
        return tfm

    def __repr__(self) -> str:
        try:
            sig = inspect.signature(self.__init__)
            args = []
            for name, param in sig.parameters.items():
                if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD) or not hasattr(self, name):
                    continue
                val = getattr(self, name)
                if param.default is not param.empty and _equal(val, param.default):
                    continue
                s = pprint.pformat(val)
                args.append(f"{name}={'...' if chr(10) in s else s}")
            return f"{type(self).__name__}({', '.join(args)})"
        except (TypeError, ValueError):
            return super().__repr__()

    __str__ = __repr__


def _equal(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False


class AugmentationList(Augmentation):
    """Apply augmentations in sequence; each sees the output of the previous one."""

    def __init__(self, augs: Sequence[Augmentation]):
        super().__init__()
        flat: List[Augmentation] = []
        for a in (augs.augs if isinstance(augs, AugmentationList) else augs):
            if isinstance(a, AugmentationList):
                flat.extend(a.augs)
            elif isinstance(a, Augmentation):
                flat.append(a)
            else:
                raise TypeError(f"AugmentationList needs Augmentation objects, got {type(a)}: {a!r}")
        self.augs = flat

    def __call__(self, aug_input: AugInput, rng) -> TransformList:
        rng = as_generator(rng)
        return TransformList([a(aug_input, rng) for a in self.augs])

    def __len__(self) -> int:
        return len(self.augs)

    def __repr__(self) -> str:
        return f"AugmentationList[{', '.join(repr(a) for a in self.augs)}]"

    __str__ = __repr__


class RandomApply(Augmentation):
    """Apply ``aug`` with probability ``prob`` (decided per sample), else do nothing."""

    def __init__(self, aug: Augmentation, prob: float = 0.5):
        super().__init__()
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"RandomApply: prob must be in [0, 1], got {prob}")
        self.aug, self.prob = aug, prob

    def __call__(self, aug_input: AugInput, rng) -> Transform:
        rng = as_generator(rng)
        if rng.random() < self.prob:
            return self.aug(aug_input, rng)
        return NoOpTransform()


def apply_augmentations(augmentations: Union[Augmentation, Sequence[Augmentation]], image: np.ndarray, *,
                        sem_seg: Optional[np.ndarray] = None, masks: Optional[np.ndarray] = None,
                        boxes: Optional[np.ndarray] = None,
                        rng: Union[np.random.Generator, int]) -> Tuple[AugInput, TransformList]:
    """Augment one sample.

    Args:
        augmentations: an Augmentation, AugmentationList or list of them.
        image: ``H×W×3`` uint8.
        sem_seg: optional ``H×W`` label map (nearest; filled pixels = ignore label).
        masks: optional ``N×H×W`` bool masks (filled pixels = False).
        boxes: optional ``N×4`` xyxy boxes.
        rng: ``np.random.Generator`` (or int seed) — the only source of randomness.

    Returns:
        ``(aug_input, transforms)``: the augmented fields (``.image``, ``.sem_seg``, ``.masks``,
        ``.boxes``) and the ``TransformList`` that was applied (use it for polygons/keypoints).
    """
    if isinstance(augmentations, Augmentation) and not isinstance(augmentations, AugmentationList):
        augmentations = [augmentations]
    aug_input = AugInput(image, sem_seg=sem_seg, masks=masks, boxes=boxes)
    tfms = AugmentationList(augmentations)(aug_input, rng)
    return aug_input, tfms
