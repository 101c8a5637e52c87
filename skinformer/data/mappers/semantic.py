"""Semantic-segmentation mapper: one dataset dict with ``sem_seg_file_name`` -> model input."""
import copy
from typing import Dict, Optional

import numpy as np
import torch

from skinformer.data.common import (
    augment_sample,
    check_same_size,
    finish_sample,
    metadata_of,
    read_or_skip,
    sem_seg_to_instances,
)
from skinformer.data.decode_cache import cached_read
from skinformer.data.mask_io import read_image, read_sem_seg
from skinformer.structures.label_space import LabelSpace

from .base import AnnotatedMapper
from .build import DATASET_MAPPER_REGISTRY

__all__ = ["SemanticMapper"]


@DATASET_MAPPER_REGISTRY.register()
class SemanticMapper(AnnotatedMapper):
    """Read image + label map, augment both with the sample's generator, pad, build targets.

    Output dict (the input dict's keys are kept):

    * ``image``: uint8 tensor ``3×h×w`` (``INPUT.FORMAT``, RGB by default) after augmentation;
    * ``sem_seg``: int64 tensor ``h×w``: classes ``0..K-1``, ``K`` = background when background is
      not a class, ``ignore_label`` for ignored and padded pixels;
    * ``instances``: ``Instances((h, w))`` with one mask per class present (``gt_classes`` int64 N,
      ``gt_masks`` bool N×h×w, ``gt_boxes`` xyxy);
    * ``height``, ``width``: ORIGINAL image size.

    Padding to ``size_divisibility`` (right/bottom): image with 0, label map with the ignore label.
    In training an unreadable image or mask logs a warning naming the file and returns ``None``
    (the loader takes the next sample); at test time it raises ``DataFileError``. Image/mask size
    mismatches always raise, naming both files.

    ``decode_cache`` (a :class:`~skinformer.data.decode_cache.DecodeCache`, set by
    :func:`~skinformer.data.build.build_train_loader` per ``DATALOADER.DECODE_CACHE``) keeps the
    decoded image and label map of each file, so a small dataset is decoded once per process.
    """

    @classmethod
    def from_config(cls, cfg, is_train: bool = True):
        """Keyword arguments from ``cfg`` (:meth:`AnnotatedMapper.from_config`); raises ``ValueError``
        if a dataset's ``ignore_label`` differs from ``MODEL.SEM_SEG_HEAD.IGNORE_VALUE``."""
        args = super().from_config(cfg, is_train)
        ignore = int(cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE)
        for n, m in args["metadata"].items():
            if LabelSpace.from_metadata(m).ignore_label != ignore:
                raise ValueError(
                    f"Dataset '{n}' has ignore_label {m.get('ignore_label')} but MODEL.SEM_SEG_HEAD.IGNORE_VALUE "
                    f"is {ignore}; they must be equal (the augmentations fill padding with IGNORE_VALUE)"
                )
        return args

    def __call__(self, dataset_dict: Dict) -> Optional[Dict]:
        dataset_dict = copy.deepcopy(dataset_dict)
        meta = metadata_of(self.metadata, dataset_dict, "SemanticMapper")
        file_name = dataset_dict["file_name"]
        mask_file = dataset_dict.get("sem_seg_file_name")
        if mask_file is None:
            raise KeyError(f"SemanticMapper: dataset dict of {file_name} has no 'sem_seg_file_name'")

        cache = self.decode_cache
        image = read_or_skip(lambda: cached_read(cache, ("image", file_name, self.image_format),
                                                 lambda: read_image(file_name, format=self.image_format)),
                             file_name, self.is_train)
        if image is None:
            return None
        sem_seg = read_or_skip(lambda: cached_read(cache, ("sem_seg", mask_file, meta.get("mask_encoding")),
                                                   lambda: read_sem_seg(mask_file, meta)),
                               mask_file, self.is_train)
        if sem_seg is None:
            return None
        check_same_size(image, file_name, sem_seg, mask_file)
        height, width = image.shape[:2]

        ignore = LabelSpace.from_metadata(meta).ignore_label
        aug_input = augment_sample(self.augmentations, self.size_divisibility, dataset_dict, image, sem_seg=sem_seg,
                                   seg_pad_value=ignore)
        image, sem_seg = aug_input.image, aug_input.sem_seg

        finish_sample(dataset_dict, image, height, width)
        dataset_dict["sem_seg"] = torch.as_tensor(np.ascontiguousarray(sem_seg).astype(np.int64))
        dataset_dict["instances"] = sem_seg_to_instances(sem_seg, len(meta["classes"]), ignore)
        return dataset_dict
