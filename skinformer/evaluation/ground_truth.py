"""Finding and reading an evaluated image's ground truth at its original resolution.

Test mappers may drop the ground-truth keys from the dicts they hand to the model (detectron2's
do), so evaluators first look in the input dict and otherwise in the registered dataset's dicts,
matched by ``file_name``.
"""
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import torch

from skinformer.data import mask_io

__all__ = ["GroundTruthLookup", "mask_metadata_kwargs", "read_label_map", "read_binary_stack"]


class GroundTruthLookup:
    """Return ``input_dict[key]``, or the value of ``key`` in the dataset dict with the same
    ``file_name`` (dataset dicts are loaded lazily, once, from ``DatasetCatalog``).

    Args:
        key: e.g. ``"sem_seg_file_name"`` or ``"label_file_names"``.
        dataset_name: registered dataset to fall back to (optional).
        table: explicit ``{file_name: value}`` fallback (used instead of the catalog when given).
    """

    def __init__(self, key: str, dataset_name: Optional[str] = None, table: Optional[Dict[str, Any]] = None):
        self.key = key
        self.dataset_name = dataset_name
        self._table = table

    def _load(self) -> Dict[str, Any]:
        if self._table is None:
            self._table = {}
            if self.dataset_name is not None:
                from skinformer.data.catalog import DatasetCatalog

                for d in DatasetCatalog.get(self.dataset_name):
                    if self.key in d and "file_name" in d:
                        self._table[d["file_name"]] = d[self.key]
        return self._table

    def __call__(self, input_dict: dict) -> Any:
        if self.key in input_dict and input_dict[self.key] is not None:
            return input_dict[self.key]
        file_name = input_dict.get("file_name")
        table = self._load()
        if file_name in table:
            return table[file_name]
        where = f"dataset '{self.dataset_name}'" if self.dataset_name else "the lookup table"
        raise KeyError(
            f"No ground truth '{self.key}' for image {file_name!r} (image_id={input_dict.get('image_id')!r}): "
            f"the input dict has no '{self.key}' and {where} has no entry with that file_name"
        )


def mask_metadata_kwargs(meta) -> Dict[str, Any]:
    """The metadata fields that decoding a dataset's masks needs, as evaluator keyword arguments."""
    return {
        "classes": list(meta.classes),
        "ignore_label": meta.get("ignore_label", 255),
        "has_background_class": meta.get("has_background_class", False),
        "mask_encoding": meta.get("mask_encoding", "binary"),
        "gray_values": meta.get("gray_values", None),
        "mat_key": meta.get("mat_key", "smgt"),
    }


def read_label_map(file_name: str, mask_meta: Dict[str, Any], device: torch.device) -> torch.Tensor:
    """Label map ``H×W`` of ``file_name`` (see :func:`skinformer.data.mask_io.read_sem_seg`) on ``device``.

    Labels are moved as int16 (values are < 256 plus the ignore label) to cut host-to-device traffic.
    """
    arr = mask_io.read_sem_seg(file_name, mask_meta)
    small = arr.astype(np.int16) if arr.size and arr.min() >= -2 ** 15 and arr.max() < 2 ** 15 else arr
    return torch.from_numpy(small).to(device, non_blocking=True)


def read_binary_stack(files: List[Optional[str]], shape, device: torch.device,
                      reader: Callable[[str], np.ndarray] = None) -> torch.Tensor:
    """Stack binary masks (one file per class; ``None`` = empty) into bool ``K×H×W`` on ``device``.

    Every mask must have ``shape`` (H, W); a mismatch is an error naming the file.
    """
    reader = reader or (lambda f: mask_io.decode_binary(mask_io.read_mask_array(f), f))
    h, w = shape
    out = np.zeros((len(files), h, w), dtype=bool)
    for i, f in enumerate(files):
        if f is None:
            continue
        m = reader(f)
        if m.shape != (h, w):
            raise mask_io.DataFileError(
                f"{f}: mask is {m.shape[0]}×{m.shape[1]} but the prediction is {h}×{w}; predictions and "
                "ground truth must both be at the image's original resolution"
            )
        out[i] = m
    return torch.from_numpy(out).to(device, non_blocking=True)
