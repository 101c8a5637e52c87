"""Augmentations with per-sample randomness, on top of fvcore transforms.

* :mod:`.transform`: deterministic fvcore ``Transform`` subclasses (resize, affine/rotation/shear,
  elastic, SSD colour) plus fvcore's own (flip, crop, pad, no-op, ``TransformList``).
* :mod:`.augmentation`: ``Augmentation`` (``get_transform(*inputs, rng) -> Transform``),
  ``AugmentationList``, ``AugInput``, ``RandomApply``, ``apply_augmentations``.
* :mod:`.augmentation_impl`: the augmentations.
* :mod:`.build`: ``build_augmentation(cfg, is_train)``, ``build_lsj_augmentation(cfg, is_train)``.

See :mod:`.augmentation` for the usage pattern in mappers.
"""
from .augmentation import AugInput, Augmentation, AugmentationList, RandomApply, apply_augmentations, as_generator
from .augmentation_impl import (
    ColorAugSSD,
    ElasticTransform,
    FixedSizeCrop,
    PadToDivisible,
    RandomCrop,
    RandomCropCategoryAreaConstraint,
    RandomFlip,
    RandomRotation,
    RandomShear,
    Resize,
    ResizeScale,
    ResizeShortestEdge,
)
from .build import (build_augmentation, build_flip_augmentation, build_lsj_augmentation, build_geometric_augmentation,
                    build_photometric_augmentation, fixed_size,
                    keeps_original_resolution)
from .extra_augmentations import (AlbumentationsTransform, RandomColorJitter, RandomGridDistortion, RandomLowResCrop,
                                 RandomOpticalDistortion, RandomSharpen, RandomShrinkPaste, ShrinkPasteTransform)
from .transform import (
    AffineTransform,
    ColorAugSSDTransform,
    CropTransform,
    ElasticDeformTransform,
    HFlipTransform,
    NoOpTransform,
    PadTransform,
    ResizeTransform,
    RotationTransform,
    ShearTransform,
    Transform,
    TransformList,
    VFlipTransform,
)

__all__ = [k for k in globals().keys() if not k.startswith("_")]
