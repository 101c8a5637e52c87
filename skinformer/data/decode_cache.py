"""Decode-once cache of training images and masks for datasets that fit in memory.

A small dataset (ISIC 2017 at 256 px: 2,000 images, about 0.5 GB decoded) is read again every epoch;
decoding its JPEG / PNG files costs a few ms per sample in every loader process. The cache keeps the
decoded uint8 arrays of each process (the main one, or each loader worker: every worker fills its
own copy) up to a byte budget, so each file is decoded at most once per process.

Config (``DATALOADER.*``):

* ``DECODE_CACHE``: ``"auto"`` (on when the dataset's estimated decoded size times the number of
  processes that hold a copy fits ``DECODE_CACHE_MB``), ``"on"`` (cache until the budget is full),
  ``"off"``;
* ``DECODE_CACHE_MB``: the budget, for all copies together.
"""
import logging
from typing import Callable, Dict, Hashable, Optional, Sequence

import numpy as np

__all__ = ["DecodeCache", "estimate_decoded_bytes", "build_decode_cache", "DECODE_CACHE_MODES"]

logger = logging.getLogger(__name__)

DECODE_CACHE_MODES = ("auto", "on", "off")


class DecodeCache:
    """``key -> decoded array``, filled on first use until ``max_bytes`` are held.

    Arrays are stored compactly (label maps whose values fit in uint8 as uint8) and handed out as
    fresh copies in their original dtype, so augmentations may modify them in place.
    """

    def __init__(self, max_bytes: int):
        if max_bytes <= 0:
            raise ValueError(f"DecodeCache: max_bytes must be > 0, got {max_bytes}")
        self.max_bytes = int(max_bytes)
        self.nbytes = 0
        self.hits = 0
        self.misses = 0
        self._store: Dict[Hashable, tuple] = {}
        self._full_logged = False

    def __len__(self) -> int:
        return len(self._store)

    @staticmethod
    def _compact(arr: np.ndarray) -> np.ndarray:
        if arr.dtype.kind in "iu" and arr.dtype.itemsize > 1 and arr.size and arr.min() >= 0 and arr.max() < 256:
            return arr.astype(np.uint8)
        return np.ascontiguousarray(arr)

    def get(self, key: Hashable, read_fn: Callable[[], np.ndarray]) -> np.ndarray:
        """The array of ``key``, from the cache or from ``read_fn()`` (whose errors propagate and
        cache nothing)."""
        entry = self._store.get(key)
        if entry is not None:
            self.hits += 1
            stored, dtype = entry
            return stored.astype(dtype, copy=True)
        self.misses += 1
        arr = np.asarray(read_fn())
        stored = self._compact(arr)
        if self.nbytes + stored.nbytes <= self.max_bytes:
            self._store[key] = (stored, arr.dtype)
            self.nbytes += stored.nbytes
        elif not self._full_logged:
            self._full_logged = True
            logger.info("Decode cache full (%.0f MB, %d entries); further samples are decoded every time",
                        self.nbytes / 2**20, len(self._store))
        return arr

    def __getstate__(self):
        # each loader worker starts empty: a filled cache would be pickled into every worker
        state = dict(self.__dict__)
        state.update(_store={}, nbytes=0, hits=0, misses=0, _full_logged=False)
        return state


def cached_read(cache: Optional[DecodeCache], key: Hashable, read_fn: Callable[[], np.ndarray]) -> np.ndarray:
    """``cache.get(key, read_fn)``, or ``read_fn()`` without a cache."""
    return read_fn() if cache is None else cache.get(key, read_fn)


def estimate_decoded_bytes(dataset_dicts: Sequence[Dict]) -> Optional[int]:
    """Decoded size of a dataset: per dict ``height × width × (3 + number of mask files)`` bytes
    (uint8 RGB and one byte per label map / binary mask); ``None`` when a dict lacks its size."""
    total = 0
    for d in dataset_dicts:
        h, w = d.get("height"), d.get("width")
        if h is None or w is None:
            return None
        masks = len(d.get("label_file_names") or ()) or (1 if d.get("sem_seg_file_name") else 0)
        total += int(h) * int(w) * (3 + masks)
    return total


def build_decode_cache(mode: str, budget_mb: float, dataset_dicts: Sequence[Dict],
                       num_processes: int) -> Optional[DecodeCache]:
    """The cache of one loader process for ``DATALOADER.DECODE_CACHE`` = ``mode``, or ``None``.

    Args:
        budget_mb: ``DATALOADER.DECODE_CACHE_MB``, shared by the ``num_processes`` copies.
        num_processes: processes that each fill a copy (loader workers, or 1 for the main process).
    """
    mode = str(mode).lower()
    if mode not in DECODE_CACHE_MODES:
        raise ValueError(f"DATALOADER.DECODE_CACHE = {mode!r} is not valid; expected one of {DECODE_CACHE_MODES}")
    if mode == "off" or budget_mb <= 0:
        return None
    copies = max(1, int(num_processes))
    per_copy = int(budget_mb * 2**20 / copies)
    if mode == "auto":
        need = estimate_decoded_bytes(dataset_dicts)
        if need is None or need > per_copy:
            why = "sizes unknown" if need is None else f"{need / 2**20:.0f} MB per copy x {copies}"
            logger.info("Decode cache off (DATALOADER.DECODE_CACHE auto): dataset does not fit %.0f MB (%s)",
                        budget_mb, why)
            return None
        logger.info("Decode cache on: %d images, about %.0f MB decoded per process x %d", len(dataset_dicts),
                    need / 2**20, copies)
    return DecodeCache(per_copy)
