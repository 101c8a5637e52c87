"""Class weights for the losses: a fixed list, or inverse class frequencies of the training set.

``MODEL.LOSS.CLASS_WEIGHTS = "inverse_frequency"`` counts, over every mask of
``DATASETS.TRAIN``, the pixels of each label ``0..K`` (label maps; ``K`` = "no class", ignored
pixels skipped) or the positive pixels of each attribute (multi-label data), sets
``w_c = 1 / f_c`` (0 for a class that never occurs) and normalises them
(``MODEL.LOSS.CLASS_WEIGHTS_NORM``: "sum" → Σw = 1, "mean" → mean 1, "min" → smallest
non-zero = 1, "none").
"""
import functools
import logging
from typing import List, Optional, Sequence

import numpy as np
from tqdm import tqdm

__all__ = ["class_pixel_counts", "inverse_frequency_weights", "resolve_class_weights", "NORMALISATIONS"]

logger = logging.getLogger(__name__)


def _norm_sum(w):
    return w / w.sum()


def _norm_mean(w):
    return w / w[w > 0].mean()


def _norm_min(w):
    return w / w[w > 0].min()


def _norm_none(w):
    return w


NORMALISATIONS = {"sum": _norm_sum, "mean": _norm_mean, "min": _norm_min, "none": _norm_none}


def inverse_frequency_weights(counts: Sequence[float], normalise: str = "sum") -> np.ndarray:
    """``counts`` (pixels per class) -> normalised ``1 / frequency`` (0 where a count is 0)."""
    if normalise not in NORMALISATIONS:
        raise ValueError(f"MODEL.LOSS.CLASS_WEIGHTS_NORM must be one of {sorted(NORMALISATIONS)}, got '{normalise}'")
    counts = np.asarray(counts, dtype=np.float64)
    if counts.sum() <= 0:
        raise ValueError("Cannot compute inverse-frequency class weights: no labelled pixel in the training set")
    freq = counts / counts.sum()
    w = np.where(freq > 0, 1.0 / np.where(freq > 0, freq, 1.0), 0.0)
    return NORMALISATIONS[normalise](w)


def class_pixel_counts(dataset_names: Sequence[str]) -> np.ndarray:
    """Pixels per label ``0..K`` (semantic data, K+1 entries) or positive pixels per attribute
    (multi-label data, K entries), summed over the datasets."""
    from skinformer.data.catalog import DatasetCatalog, MetadataCatalog
    from skinformer.data.mappers.multilabel import read_label_masks
    from skinformer.data.mask_io import read_sem_seg
    from skinformer.structures.label_space import LabelSpace

    total: Optional[np.ndarray] = None
    for name in dataset_names:
        meta = MetadataCatalog.get(name)
        k = len(meta.classes)
        ignore = LabelSpace.from_metadata(meta).ignore_label
        dicts = DatasetCatalog.get(name)
        for d in tqdm(dicts, desc=f"class frequencies of {name}", leave=False):
            if "label_file_names" in d:
                masks = read_label_masks(d["label_file_names"], (d["height"], d["width"]))
                counts = masks.reshape(k, -1).sum(1).astype(np.float64)
            elif "sem_seg_file_name" in d:
                lab = read_sem_seg(d["sem_seg_file_name"], meta)
                lab = lab[lab != ignore]
                counts = np.bincount(lab.ravel(), minlength=k + 1)[: k + 1].astype(np.float64)
            else:
                raise KeyError(f"MODEL.LOSS.CLASS_WEIGHTS='inverse_frequency' needs masks; dataset '{name}' record "
                               f"{d.get('file_name')} has neither 'sem_seg_file_name' nor 'label_file_names'")
            if total is not None and total.shape != counts.shape:
                raise ValueError(f"DATASETS.TRAIN mixes datasets with different class counts ({name})")
            total = counts if total is None else total + counts
    if total is None:
        raise ValueError("DATASETS.TRAIN is empty: cannot compute inverse-frequency class weights")
    return total


@functools.lru_cache(maxsize=8)
def _cached_inverse_frequency(dataset_names: tuple, normalise: str) -> tuple:
    counts = class_pixel_counts(dataset_names)
    w = inverse_frequency_weights(counts, normalise)
    logger.info("Inverse-frequency class weights from %s (pixel counts %s, normalised '%s'): %s",
                list(dataset_names), counts.astype(np.int64).tolist(), normalise, np.round(w, 6).tolist())
    return tuple(float(x) for x in w)


def resolve_class_weights(cfg) -> Optional[List[float]]:
    """``MODEL.LOSS.CLASS_WEIGHTS`` as a list of floats, or None when unset."""
    value = cfg.MODEL.LOSS.CLASS_WEIGHTS
    if value is None or (isinstance(value, (list, tuple)) and len(value) == 0) or value == "":
        return None
    if isinstance(value, str):
        if value != "inverse_frequency":
            raise ValueError(f"MODEL.LOSS.CLASS_WEIGHTS must be a list of floats or 'inverse_frequency', got '{value}'")
        return list(_cached_inverse_frequency(tuple(cfg.DATASETS.TRAIN), str(cfg.MODEL.LOSS.CLASS_WEIGHTS_NORM)))
    try:
        weights = [float(x) for x in value]
    except (TypeError, ValueError) as e:
        raise ValueError(f"MODEL.LOSS.CLASS_WEIGHTS must be a list of floats or 'inverse_frequency', got {value!r}") from e
    if any(x < 0 for x in weights):
        raise ValueError(f"MODEL.LOSS.CLASS_WEIGHTS must be >= 0, got {weights}")
    return weights
