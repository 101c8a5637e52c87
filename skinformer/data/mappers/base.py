"""What the mappers of annotated samples (semantic, multi-label, instance) share: their
constructor arguments, how ``from_config`` fills them, and the metadata table they carry."""
import logging
from typing import Dict, List

from skinformer.config import configurable
from skinformer.data.catalog import MetadataCatalog
from skinformer.data.common import metadata_table
from skinformer.data.transforms import AugmentationList, build_augmentation

__all__ = ["AnnotatedMapper", "dataset_metadata_table"]

logger = logging.getLogger(__name__)


def dataset_metadata_table(names) -> Dict[str, Dict]:
    """``{name: metadata as a plain dict}`` for ``names``, resolved in the calling (main) process so
    mappers carry picklable metadata into loader workers instead of looking it up there."""
    return {n: MetadataCatalog.get(n).as_dict() for n in names}


class AnnotatedMapper:
    """Base of the mappers that read an image with its annotations and augment both.

    Subclasses implement ``__call__(dataset_dict) -> dict or None`` and may override
    :meth:`build_augmentations` (the training / test recipe) and ``metadata_required``.
    ``decode_cache`` (a :class:`~skinformer.data.decode_cache.DecodeCache`, set by
    :func:`~skinformer.data.build.build_train_loader` per ``DATALOADER.DECODE_CACHE``) keeps decoded
    files, so a small dataset is decoded once per process.
    """

    decode_cache = None
    #: without metadata the mapper cannot decode its targets (False: metadata only checks them)
    metadata_required = True

    @configurable
    def __init__(self, is_train: bool = True, *, augmentations: List, metadata=None, image_format: str = "RGB",
                 size_divisibility: int = -1):
        """
        Args:
            is_train: skip unreadable samples (True) or raise (False).
            augmentations: list of :class:`~skinformer.data.transforms.Augmentation`.
            metadata: one dataset's metadata (``Metadata`` or dict with ``classes``, ``ignore_label``,
                ``mask_encoding``, background rule; see :class:`~skinformer.structures.LabelSpace`),
                or ``{dataset_name: metadata}`` picked by the dict's ``dataset_name`` (set by
                ``get_dataset_dicts``). Required unless ``metadata_required`` is False.
            image_format: "RGB" or "BGR".
            size_divisibility: pad to a multiple of this (<= 0: no padding).
        """
        name = type(self).__name__
        self.is_train = is_train
        self.augmentations = AugmentationList(augmentations)
        self.metadata = metadata_table(metadata, name, required=self.metadata_required)
        self.image_format = image_format
        self.size_divisibility = size_divisibility
        logger.info(f"[{name}] augmentations used in {'training' if is_train else 'inference'}: {self.augmentations}")

    @classmethod
    def build_augmentations(cls, cfg, is_train: bool) -> List:
        """The augmentations of ``cfg`` (:func:`~skinformer.data.transforms.build_augmentation`)."""
        return build_augmentation(cfg, is_train)

    @classmethod
    def from_config(cls, cfg, is_train: bool = True) -> Dict:
        """Keyword arguments from ``cfg``: :meth:`build_augmentations`, ``INPUT.FORMAT``,
        ``INPUT.SIZE_DIVISIBILITY`` and the metadata of the train (or test) datasets."""
        names = list(cfg.DATASETS.TRAIN if is_train else cfg.DATASETS.TEST)
        return {
            "is_train": is_train,
            "augmentations": cls.build_augmentations(cfg, is_train),
            "metadata": dataset_metadata_table(names),
            "image_format": cfg.INPUT.FORMAT,
            "size_divisibility": cfg.INPUT.SIZE_DIVISIBILITY,
        }
