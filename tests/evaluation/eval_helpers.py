"""Small helpers shared by the evaluation tests (mask files on disk, dummy outputs)."""
import os

import numpy as np
import torch
from PIL import Image


def write_mask(path, mask: np.ndarray, scale: int = 255) -> str:
    """Save a bool / small-int mask as an 8-bit PNG (bool -> 0/``scale``)."""
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    arr = mask.astype(np.uint8) * scale if mask.dtype == bool else mask.astype(np.uint8)
    Image.fromarray(arr).save(str(path))
    return str(path)


def scores_from_fg(fg: np.ndarray, hi: float = 0.9, lo: float = 0.1) -> torch.Tensor:
    """Binary foreground -> 1×H×W probability-like scores."""
    return torch.from_numpy(np.where(fg, hi, lo).astype(np.float32))[None]


def rect(h, w, y0, y1, x0, x1) -> np.ndarray:
    m = np.zeros((h, w), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m
