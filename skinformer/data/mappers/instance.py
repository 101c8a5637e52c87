"""Instance mapper: COCO-style ``annotations`` (polygons or RLE) -> model input.

The masks are rasterised at the image size BEFORE augmentation and transformed as a bool stack
like the image, so rotations, elastic warps and crops move them exactly; boxes are then taken
from the transformed masks (transformed polygons' boxes are wrong after rotation or cropping).
"""
import copy
import logging
from typing import Dict, List, Optional

import numpy as np

from skinformer.data.common import (
    augment_sample,
    finish_sample,
    masks_to_instances,
    metadata_of,
    read_or_skip,
)
from skinformer.data.decode_cache import cached_read
from skinformer.data.mask_io import DataFileError, read_image
from skinformer.data.transforms import build_lsj_augmentation
from skinformer.structures import polygons_to_bitmask

from .base import AnnotatedMapper
from .build import DATASET_MAPPER_REGISTRY

__all__ = ["InstanceMapper", "annotations_to_masks"]

logger = logging.getLogger(__name__)


def _rle_to_mask(seg: Dict, height: int, width: int, where: str) -> np.ndarray:
    from pycocotools import mask as mask_util

    if [int(s) for s in seg["size"]] != [height, width]:
        raise DataFileError(
            f"{where}: RLE size {list(seg['size'])} differs from the image size {[height, width]} (H, W)"
        )
    if isinstance(seg["counts"], list):  # uncompressed RLE
        seg = mask_util.frPyObjects(seg, height, width)
    elif isinstance(seg["counts"], str):
        seg = {"size": seg["size"], "counts": seg["counts"].encode("ascii")}
    return mask_util.decode(seg).astype(bool)


def annotations_to_masks(annotations: List[Dict], height: int, width: int, file_name: str = "<image>"):
    """Rasterise non-crowd annotations at ``height×width``.

    Returns:
        ``(masks bool N×H×W, category ids int64 N, number of dropped empty polygons)``.
        Crowd annotations are dropped; an annotation whose polygons are all degenerate (< 3 points)
        is dropped and counted.
    """
    masks, classes, dropped = [], [], 0
    for k, ann in enumerate(annotations):
        if int(ann.get("iscrowd", 0)):
            continue
        seg = ann.get("segmentation")
        where = f"{file_name} annotation {ann.get('id', k)}"
        if isinstance(seg, dict):
            m = _rle_to_mask(seg, height, width, where)
        elif isinstance(seg, (list, tuple)):
            polys = [p for p in seg if len(p) >= 6 and len(p) % 2 == 0]
            if not polys:
                dropped += 1
                continue
            m = polygons_to_bitmask(polys, height, width)
        else:
            raise DataFileError(f"{where}: 'segmentation' must be polygons or RLE, got {type(seg).__name__}")
        masks.append(m)
        classes.append(int(ann["category_id"]))
    arr = np.stack(masks) if masks else np.zeros((0, height, width), dtype=bool)
    return arr, np.asarray(classes, dtype=np.int64), dropped


@DATASET_MAPPER_REGISTRY.register()
class InstanceMapper(AnnotatedMapper):
    """Read the image, rasterise its instances, augment both with the sample's generator, filter.

    Training default (:func:`~skinformer.data.transforms.build_lsj_augmentation`, SiMaskFormer's
    instance recipe with ``INPUT.ROTATION.PROB 0.5``, ``ANGLE (-45, 45)``, ``RANDOM_FLIP "both"``,
    ``IMAGE_SIZE 896``): per-sample rotation, flips, ``ResizeScale(MIN_SCALE, MAX_SCALE)`` to
    ``IMAGE_SIZE`` and ``FixedSizeCrop(IMAGE_SIZE)`` padded with 128.

    Output dict (the input dict's keys are kept):

    * ``image``: uint8 tensor ``3×h×w``;
    * ``instances``: ``Instances((h, w))`` with ``gt_classes`` int64 N, ``gt_masks`` bool N×h×w and
      ``gt_boxes`` (xyxy pixels, tight around the transformed masks). Crowd annotations are dropped and
      instances left empty by the augmentation (cropped away) are removed;
    * ``height``, ``width``: ORIGINAL image size.

    ``decode_cache``: as in :class:`~skinformer.data.mappers.SemanticMapper` (the image only;
    polygons are rasterised per sample).
    """

    #: category ids are range-checked against the metadata's classes when it is given
    metadata_required = False
    _num_dropped = 0  # samples left without instances so far (per mapper copy)

    @classmethod
    def build_augmentations(cls, cfg, is_train: bool) -> List:
        """The LSJ recipe (:func:`~skinformer.data.transforms.build_lsj_augmentation`)."""
        return build_lsj_augmentation(cfg, is_train)

    def _num_classes(self, dataset_dict: Dict) -> Optional[int]:
        # metadata is optional here: without it category ids are not range-checked
        try:
            meta = metadata_of(self.metadata, dataset_dict, "InstanceMapper")
        except KeyError:
            return None
        return len(meta["classes"])

    def __call__(self, dataset_dict: Dict) -> Optional[Dict]:
        dataset_dict = copy.deepcopy(dataset_dict)
        file_name = dataset_dict["file_name"]
        if "annotations" not in dataset_dict:
            raise KeyError(f"InstanceMapper: dataset dict of {file_name} has no 'annotations'")
        image = read_or_skip(lambda: cached_read(self.decode_cache, ("image", file_name, self.image_format),
                                                 lambda: read_image(file_name, format=self.image_format)),
                             file_name, self.is_train)
        if image is None:
            return None
        height, width = image.shape[:2]
        declared = (dataset_dict.get("height"), dataset_dict.get("width"))
        if None not in declared and tuple(int(v) for v in declared) != (height, width):
            raise DataFileError(f"Image {file_name} is {width}x{height} (WxH) but its annotations are for "
                                f"{declared[1]}x{declared[0]}")

        masks, classes, dropped = annotations_to_masks(dataset_dict.pop("annotations"), height, width, file_name)
        if dropped:
            self._num_dropped += dropped
            logger.warning(f"{file_name}: dropped {dropped} annotations with empty polygons "
                           f"({self._num_dropped} so far)")
        k = self._num_classes(dataset_dict)
        if k is not None and len(classes) and (classes.min() < 0 or classes.max() >= k):
            raise DataFileError(f"{file_name}: category ids {sorted(set(classes.tolist()))} outside the "
                                f"{k} classes (contiguous ids 0..{k - 1} expected)")

        aug_input = augment_sample(self.augmentations, self.size_divisibility, dataset_dict, image, masks=masks)
        image, masks = aug_input.image, aug_input.masks.astype(bool)

        keep = masks.reshape(len(masks), -1).any(axis=1) if len(masks) else np.zeros(0, dtype=bool)
        finish_sample(dataset_dict, image, height, width)
        dataset_dict["instances"] = masks_to_instances(masks[keep], classes[keep], image.shape[:2])
        return dataset_dict
