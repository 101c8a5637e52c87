"""Pieces shared by the loaders and the mappers.

Loader side: :class:`DatasetFromList` keeps the dataset dicts as ONE pickled numpy byte buffer,
so DataLoader workers forked from the main process share it copy-on-write without touching
Python refcounts (a plain list of dicts would be copied page by page into every worker).

Mapper side (used by every mapper, semantic, multi-label and instance):

* :func:`sample_rng` — the per-sample augmentation generator from ``dataset_dict["_aug_seed"]``;
* :func:`read_or_skip` — read a file; during training an unreadable file logs a warning naming it
  and returns ``None`` (the mapper then returns ``None`` and the loader takes the next sample), at
  test time the :class:`~skinformer.data.mask_io.DataFileError` propagates;
* :func:`check_same_size` — image/mask size mismatch error naming both files and sizes;
* :func:`metadata_table` / :func:`metadata_of` — a mapper's ``{dataset_name: metadata}`` and the
  entry for one dataset dict;
* :func:`augment_sample` — the mapper's augmentations plus padding, with the sample's generator;
* :func:`finish_sample` — the output keys every mapper sets (``image``, original ``height``/``width``);
* :func:`image_to_tensor`, :func:`sem_seg_to_instances`, :func:`masks_to_instances`.
"""
import logging
import pickle
from typing import Any, Callable, Dict, Mapping, Optional, Sequence

import numpy as np
import torch

from skinformer.structures import BitMasks, Boxes, Instances

from .mask_io import DataFileError
from .transforms import AugInput, PadToDivisible, apply_augmentations

__all__ = [
    "DatasetFromList", "sample_rng", "read_or_skip", "check_same_size", "image_to_tensor",
    "sem_seg_to_instances", "masks_to_instances", "metadata_table", "metadata_of",
    "augment_sample", "finish_sample",
]

logger = logging.getLogger(__name__)


class DatasetFromList(torch.utils.data.Dataset):
    """A read-only list of picklable items, stored serialized (``serialize=True``) in a numpy buffer."""

    def __init__(self, lst: Sequence[Any], copy: bool = True, serialize: bool = True):
        self._copy = copy
        self._serialize = serialize
        if serialize:
            blobs = [np.frombuffer(pickle.dumps(x, protocol=-1), dtype=np.uint8) for x in lst]
            self._addr = np.cumsum(np.asarray([len(b) for b in blobs], dtype=np.int64))
            self._data = np.concatenate(blobs) if blobs else np.zeros(0, dtype=np.uint8)
            self._len = len(blobs)
        else:
            self._lst = list(lst)
            self._len = len(self._lst)

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, idx: int) -> Any:
        if idx < 0:
            idx += self._len
        if not 0 <= idx < self._len:
            raise IndexError(f"index {idx} out of range for a dataset of {self._len} items")
        if self._serialize:
            start = 0 if idx == 0 else int(self._addr[idx - 1])
            end = int(self._addr[idx])
            return pickle.loads(memoryview(self._data[start:end]))
        import copy

        return copy.deepcopy(self._lst[idx]) if self._copy else self._lst[idx]


# ---------------------------------------------------------------------------------------------
# mapper helpers
# ---------------------------------------------------------------------------------------------
def sample_rng(dataset_dict: Dict) -> np.random.Generator:
    """The generator for this sample's augmentations, seeded by the loader's ``_aug_seed``.

    Without ``_aug_seed`` (a mapper called by hand) the generator gets fresh OS entropy.
    """
    seed = dataset_dict.get("_aug_seed")
    if seed is None:
        return np.random.default_rng()
    return np.random.default_rng(seed)


def read_or_skip(read_fn: Callable[[], Any], file_name: str, is_train: bool) -> Optional[Any]:
    """``read_fn()``; during training a :class:`DataFileError` is logged (naming ``file_name``) and
    ``None`` returned so the sample is skipped; at test time the error propagates."""
    try:
        return read_fn()
    except DataFileError as e:
        if not is_train:
            raise
        logger.warning("Skipping unreadable training sample %s: %s", file_name, e)
        return None


def check_same_size(image: np.ndarray, image_file: str, mask: np.ndarray, mask_file: str) -> None:
    """Raise :class:`DataFileError` naming both files when image and mask sizes differ."""
    ih, iw = image.shape[:2]
    mh, mw = mask.shape[:2]
    if (ih, iw) != (mh, mw):
        raise DataFileError(
            f"Image/mask size mismatch: image {image_file} is {iw}x{ih} (WxH) but mask {mask_file} is "
            f"{mw}x{mh}. Masks must have the size of their image; run tools/validate_dataset.py."
        )


def metadata_table(metadata, owner: str, required: bool = True) -> Dict[Optional[str], Dict]:
    """A mapper's ``metadata`` argument as ``{dataset_name: metadata as a plain dict}``.

    One dataset's metadata (``Metadata`` or a mapping with ``classes``) becomes ``{None: ...}`` and
    applies to every dataset dict. ``required``: an empty table is an error naming ``owner``.
    """
    if hasattr(metadata, "as_dict"):
        metadata = metadata.as_dict()
    if isinstance(metadata, Mapping) and "classes" in metadata:
        return {None: dict(metadata)}
    table = {k: (v.as_dict() if hasattr(v, "as_dict") else dict(v)) for k, v in dict(metadata or {}).items()}
    if required and not table:
        raise ValueError(f"{owner} needs the metadata of at least one dataset")
    return table


def metadata_of(table: Mapping[Optional[str], Mapping], dataset_dict: Dict, owner: str) -> Mapping:
    """The metadata of ``dataset_dict["dataset_name"]`` in ``table`` (the only entry when there is
    one); ``KeyError`` naming ``owner``, the dataset and the known names otherwise."""
    name = dataset_dict.get("dataset_name")
    if name in table:
        return table[name]
    if len(table) == 1:
        return next(iter(table.values()))
    raise KeyError(
        f"{owner}: no metadata for dataset '{name}' of {dataset_dict.get('file_name')}; "
        f"known: {sorted(str(k) for k in table)}"
    )


def augment_sample(augmentations, size_divisibility: int, dataset_dict: Dict, image: np.ndarray, *,
                   sem_seg: Optional[np.ndarray] = None, masks: Optional[np.ndarray] = None,
                   seg_pad_value: int = 255) -> AugInput:
    """Augment one sample with the generator of :func:`sample_rng`.

    ``augmentations`` (an ``AugmentationList`` or list) is followed, when ``size_divisibility > 0``,
    by right/bottom padding to a multiple of it: the image with 0, ``sem_seg`` with
    ``seg_pad_value`` (the ignore label), ``masks`` with False. Returns the augmented
    :class:`~skinformer.data.transforms.AugInput` (``.image``, ``.sem_seg``, ``.masks``).
    """
    augs = list(getattr(augmentations, "augs", augmentations))
    if size_divisibility and size_divisibility > 0:
        augs.append(PadToDivisible(size_divisibility, pad_value=0, seg_pad_value=seg_pad_value))
    aug_input, _ = apply_augmentations(augs, image, sem_seg=sem_seg, masks=masks, rng=sample_rng(dataset_dict))
    return aug_input


def finish_sample(dataset_dict: Dict, image: np.ndarray, height: int, width: int) -> Dict:
    """Set the output keys every mapper has: ``image`` (uint8 ``3×h×w`` tensor of the augmented
    image) and the ORIGINAL ``height`` / ``width``; drop the loader's ``_aug_seed``."""
    dataset_dict.pop("_aug_seed", None)
    dataset_dict["height"], dataset_dict["width"] = height, width
    dataset_dict["image"] = image_to_tensor(image)
    return dataset_dict


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """``H×W×C`` numpy image -> contiguous ``C×H×W`` tensor of the same dtype (uint8)."""
    if image.ndim == 2:
        image = image[:, :, None]
    return torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))


def sem_seg_to_instances(sem_seg: np.ndarray, num_classes: int, ignore_label: int) -> Instances:
    """One instance per class present in ``sem_seg`` (``0..num_classes-1``; background-no-class
    ``num_classes`` and ``ignore_label`` are excluded).

    Returns ``Instances((H, W))`` with ``gt_classes`` int64 N, ``gt_masks`` bool N×H×W and
    ``gt_boxes`` (xyxy pixels, tight around each mask).
    """
    sem_seg = np.asarray(sem_seg)
    if sem_seg.size and sem_seg.dtype.kind in "iub" and sem_seg.min() >= 0:
        # a histogram is ~10x cheaper than np.unique's sort on a per-sample label map
        counts = np.bincount(sem_seg.ravel().astype(np.intp, copy=False), minlength=num_classes)[:num_classes]
        present = np.flatnonzero(counts)
    else:
        present = np.unique(sem_seg)
    classes = [int(c) for c in present if 0 <= c < num_classes and c != ignore_label]
    masks = np.stack([sem_seg == c for c in classes]) if classes else np.zeros((0,) + sem_seg.shape, dtype=bool)
    return masks_to_instances(masks, classes, sem_seg.shape)


def masks_to_instances(masks: np.ndarray, classes: Sequence[int], image_size) -> Instances:
    """``Instances`` from ``N×H×W`` bool masks and their class ids (boxes from the masks)."""
    inst = Instances(tuple(int(s) for s in image_size[:2]))
    inst.gt_classes = torch.as_tensor(np.asarray(list(classes), dtype=np.int64).reshape(-1))
    bm = BitMasks(torch.from_numpy(np.ascontiguousarray(masks, dtype=bool)))
    inst.gt_masks = bm.tensor
    inst.gt_boxes = bm.get_bounding_boxes() if len(bm) else Boxes(torch.zeros((0, 4), dtype=torch.float32))
    return inst

