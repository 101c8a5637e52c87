"""Inference mapper: read the image and resize its shortest edge; no labels are decoded
(evaluators read the ground truth files themselves)."""
import copy
import logging
from typing import Dict, List

from skinformer.config import configurable
from skinformer.data.common import image_to_tensor
from skinformer.data.mask_io import read_image
from skinformer.data.transforms import AugmentationList, apply_augmentations, build_augmentation

from .build import DATASET_MAPPER_REGISTRY

__all__ = ["InferenceMapper"]

logger = logging.getLogger(__name__)


@DATASET_MAPPER_REGISTRY.register()
class InferenceMapper:
    """Output: the input dict plus ``image`` (uint8 ``3×h×w`` after ``ResizeShortestEdge(MIN_SIZE_TEST,
    MAX_SIZE_TEST)``), with ``height``/``width`` set to the ORIGINAL size (predictions are returned
    at that size). An unreadable image raises ``DataFileError`` naming the file."""

    @configurable
    def __init__(self, is_train: bool = False, *, augmentations: List, image_format: str = "RGB"):
        # is_train is accepted for the registry's call signature; inference never skips samples
        self.augmentations = AugmentationList(augmentations)
        self.image_format = image_format

    @classmethod
    def from_config(cls, cfg, is_train: bool = False):
        """Keyword arguments from ``cfg``: the test-time augmentations and ``INPUT.FORMAT``."""
        return {
            "is_train": is_train,
            "augmentations": build_augmentation(cfg, is_train=False),
            "image_format": cfg.INPUT.FORMAT,
        }

    def __call__(self, dataset_dict: Dict) -> Dict:
        dataset_dict = copy.deepcopy(dataset_dict)
        image = read_image(dataset_dict["file_name"], format=self.image_format)
        height, width = image.shape[:2]
        # resizing is deterministic; a fixed seed only satisfies the API
        aug_input, _ = apply_augmentations(self.augmentations, image, rng=0)
        dataset_dict.pop("_aug_seed", None)
        dataset_dict["height"], dataset_dict["width"] = height, width
        dataset_dict["image"] = image_to_tensor(aug_input.image)
        return dataset_dict
