"""Multi-label mapper: one binary mask file per class (ISIC 2018 Task 2 attributes) -> model input.

Attribute masks overlap (a pixel can carry pigment network and globules), so they cannot be one
label map: they travel through the augmentations as a ``K×H×W`` bool stack, transformed exactly
like the image (nearest resampling; pixels coming from outside the image become False).
"""
import copy
from typing import Dict, List, Optional

import numpy as np
import torch

from skinformer.data.common import (
    augment_sample,
    check_same_size,
    finish_sample,
    masks_to_instances,
    metadata_of,
    read_or_skip,
)
from skinformer.data.decode_cache import cached_read
from skinformer.data.mask_io import DataFileError, read_binary_mask, read_image

from .base import AnnotatedMapper
from .build import DATASET_MAPPER_REGISTRY

__all__ = ["MultiLabelMapper", "read_label_masks"]


def read_label_masks(files: List[Optional[str]], shape=None) -> np.ndarray:
    """Stack binary masks (``None`` = empty class) into bool ``K×H×W``; ``shape`` (H, W) is required
    when every entry is ``None``. Masks of different sizes are an error naming the files."""
    arrays = [None if f is None else read_binary_mask(f) for f in files]
    ref = next(((f, a) for f, a in zip(files, arrays) if a is not None), None)
    if ref is None and shape is None:
        raise ValueError("read_label_masks: all entries are None and no shape was given")
    h, w = ref[1].shape if ref is not None else shape
    out = np.zeros((len(files), h, w), dtype=bool)
    for k, (f, a) in enumerate(zip(files, arrays)):
        if a is None:
            continue
        if a.shape != (h, w):
            raise DataFileError(f"Mask {f} is {a.shape[1]}x{a.shape[0]} (WxH) but {ref[0]} is {w}x{h}; "
                                "all masks of one image must have its size")
        out[k] = a
    return out


@DATASET_MAPPER_REGISTRY.register()
class MultiLabelMapper(AnnotatedMapper):
    """Read the image and its ``label_file_names`` (one per class, ``classes`` order), augment them
    with the sample's generator (:func:`~skinformer.data.common.sample_rng`), pad, build targets.

    Output dict (the input dict's keys are kept):

    * ``image``: uint8 tensor ``3×h×w`` after augmentation;
    * ``label_masks``: bool tensor ``K×h×w``, class ``k`` present at a pixel independently of the others;
    * ``instances``: ``Instances((h, w))`` with one mask per attribute present after augmentation
      (``gt_classes`` int64 N, ``gt_masks`` bool N×h×w, possibly overlapping; ``gt_boxes`` xyxy from the masks);
    * ``height``, ``width``: ORIGINAL image size.

    Padding to ``size_divisibility`` (right/bottom) fills the image with 0 and the masks with False.
    Unreadable files skip the sample in training (warning naming the file) and raise at test time;
    a mask whose size differs from the image always raises, naming both files.
    ``decode_cache``: as in :class:`~skinformer.data.mappers.SemanticMapper` (image and mask stack).
    """

    def __call__(self, dataset_dict: Dict) -> Optional[Dict]:
        dataset_dict = copy.deepcopy(dataset_dict)
        meta = metadata_of(self.metadata, dataset_dict, "MultiLabelMapper")
        file_name = dataset_dict["file_name"]
        files = dataset_dict.get("label_file_names")
        if files is None:
            raise KeyError(f"MultiLabelMapper: dataset dict of {file_name} has no 'label_file_names'")
        num_classes = len(meta["classes"])
        if len(files) != num_classes:
            raise DataFileError(f"{file_name}: {len(files)} label files for {num_classes} classes "
                                f"{list(meta['classes'])}; label_file_names must have one entry per class")

        cache = self.decode_cache
        image = read_or_skip(lambda: cached_read(cache, ("image", file_name, self.image_format),
                                                 lambda: read_image(file_name, format=self.image_format)),
                             file_name, self.is_train)
        if image is None:
            return None
        masks = read_or_skip(lambda: cached_read(cache, ("label_masks", tuple(files)),
                                                 lambda: read_label_masks(files, image.shape[:2])),
                             str(files), self.is_train)
        if masks is None:
            return None
        ref = next((f for f in files if f is not None), None)
        if ref is not None:
            check_same_size(image, file_name, masks[0], ref)
        height, width = image.shape[:2]

        aug_input = augment_sample(self.augmentations, self.size_divisibility, dataset_dict, image, masks=masks)
        image, masks = aug_input.image, aug_input.masks.astype(bool)

        present = [k for k in range(num_classes) if masks[k].any()]
        finish_sample(dataset_dict, image, height, width)
        dataset_dict["label_masks"] = torch.from_numpy(np.ascontiguousarray(masks))
        dataset_dict["instances"] = masks_to_instances(masks[present], present, image.shape[:2])
        return dataset_dict
