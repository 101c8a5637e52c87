"""Synthetic dermoscopy-like lesion dataset with exact masks (quick start and tests).

Every image is a pure function of ``(seed, split, index)`` through a numpy ``Generator`` (no torch
randomness): a skin-tone background with per-image tone and uneven pigmentation, vignetting (dark
corners, sometimes the black circular field of a dermoscope), 1–3 irregular multi-coloured
lesions with blurred borders (some with dots/globules or a pigment-network texture), hairs as
thin dark curves and occasional specular glare. The mask (0/255 PNG) is the exact union of the
lesion polygons; the blurred border is centred on it, so the boundary is learnable.

Files are written once to ``<cache>/synthetic_lesion/<hash of the parameters>/`` where ``<cache>``
is ``$SKINFORMER_CACHE`` or ``~/.cache/skinformer``. Generation writes to a temporary folder that
is renamed at the end, so concurrent processes and interrupted runs never see partial data.
"""
import hashlib
import json
import logging
import os
import shutil
import tempfile
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np

__all__ = [
    "SYNTHETIC_VERSION", "SYNTHETIC_DEFAULTS", "make_lesion_sample", "synthetic_cache_root",
    "generate_synthetic_lesion", "load_synthetic_lesion", "register_synthetic_lesion",
]

logger = logging.getLogger(__name__)

# bump when the generator's output changes, so stale caches are not reused
SYNTHETIC_VERSION = 1
SYNTHETIC_DEFAULTS = {"image_size": 256, "num_train": 64, "num_val": 16, "seed": 0}
CACHE_ENV = "SKINFORMER_CACHE"
_SPLIT_IDS = {"train": 0, "val": 1}

# light and dark skin tones (RGB) between which each image draws its base tone
_SKIN_LIGHT = np.array([238.0, 200.0, 180.0])
_SKIN_DARK = np.array([165.0, 112.0, 84.0])


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int, channels: int = 1) -> np.ndarray:
    """Low-frequency noise ~N(0, 1)-ish: a ``cells×cells`` random grid upsampled bicubically."""
    small = rng.standard_normal((cells, cells, channels)).astype(np.float32)
    big = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    return big.reshape(h, w, channels)


def _skin(rng: np.random.Generator, s: int) -> np.ndarray:
    tone = rng.uniform(0.0, 1.0)
    base = _SKIN_LIGHT * (1 - tone) + _SKIN_DARK * tone + rng.normal(0.0, 6.0, 3)
    img = np.broadcast_to(base.astype(np.float32), (s, s, 3)).copy()
    img += _smooth_noise(rng, s, s, 4, 3) * rng.uniform(3.0, 9.0)  # uneven pigmentation, redness
    img += _smooth_noise(rng, s, s, 24, 1) * rng.uniform(2.0, 5.0)  # skin texture
    img += rng.normal(0.0, 2.0, (s, s, 1)).astype(np.float32)
    return img


def _vignette(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    s = img.shape[0]
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    c = (s - 1) / 2.0
    r = np.sqrt((xx - c) ** 2 + (yy - c) ** 2) / (s / 2.0)  # 1 at edge centres, 1.41 at corners
    r0 = rng.uniform(0.55, 0.85)
    strength = rng.uniform(0.25, 0.6)
    v = 1.0 - strength * np.clip((r - r0) / (1.42 - r0), 0.0, 1.0) ** 1.5
    img = img * v[:, :, None]
    if rng.random() < 0.4:  # black circular field of the dermoscope
        radius = rng.uniform(1.0, 1.3)
        field = np.clip((radius - r) / 0.04, 0.0, 1.0)
        img = img * field[:, :, None] + rng.uniform(5, 20) * (1 - field[:, :, None])
    return img


def _lesion_polygon(rng: np.random.Generator, center: Tuple[float, float], radius: float) -> np.ndarray:
    theta = np.linspace(0.0, 2 * np.pi, 180, endpoint=False)
    r = np.ones_like(theta)
    for k in range(2, 8):  # irregular border: a few random harmonics
        r += rng.uniform(0.0, 0.28 / k) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    elong = rng.uniform(0.75, 1.25)
    rot = rng.uniform(0, np.pi)
    x, y = radius * r * np.cos(theta) * elong, radius * r * np.sin(theta) / elong
    xr = x * np.cos(rot) - y * np.sin(rot) + center[0]
    yr = x * np.sin(rot) + y * np.cos(rot) + center[1]
    return np.stack([xr, yr], axis=1)


def _draw_lesion(rng: np.random.Generator, img: np.ndarray, skin_mean: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Blend one lesion into ``img`` (in place) and return its exact bool mask."""
    s = img.shape[0]
    mask_u8 = np.zeros((s, s), np.uint8)
    # 4 bits of sub-pixel precision for the polygon; no anti-aliasing, so the mask is exact
    cv2.fillPoly(mask_u8, [np.round(poly * 16).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)
    mask = mask_u8.astype(bool)
    if not mask.any():
        return mask

    # multi-coloured body: light brown <-> dark brown, sometimes a blue-grey veil or a dark centre
    light = skin_mean * rng.uniform(0.55, 0.75) * np.array([1.0, 0.9, 0.8])
    dark = skin_mean * rng.uniform(0.22, 0.42) * np.array([1.0, 0.85, 0.8])
    t = _smooth_noise(rng, s, s, int(rng.integers(4, 10)))[:, :, 0]
    t = np.clip(0.5 + 0.35 * t, 0.0, 1.0)[:, :, None]
    color = light * (1 - t) + dark * t
    if rng.random() < 0.35:
        veil = np.clip(_smooth_noise(rng, s, s, 5)[:, :, 0] - 0.3, 0.0, 1.0)[:, :, None]
        color = color * (1 - 0.7 * veil) + np.array([95.0, 100.0, 125.0]) * 0.7 * veil
    if rng.random() < 0.5:
        dist = cv2.distanceTransform(mask_u8, cv2.DIST_L2, 3)
        centre = (dist / max(float(dist.max()), 1.0))[:, :, None]
        color = color * (1 - 0.35 * centre)

    # blurred border centred on the exact polygon edge
    sigma = rng.uniform(0.8, 3.0)
    alpha = cv2.GaussianBlur(mask_u8.astype(np.float32), (0, 0), sigma)[:, :, None] * rng.uniform(0.85, 0.97)
    img *= 1 - alpha
    img += alpha * color

    ys, xs = np.nonzero(mask)
    if rng.random() < 0.45:  # dots and globules
        n = int(rng.integers(8, 50))
        pick = rng.integers(0, len(ys), n)
        layer = np.zeros((s, s), np.float32)
        for y, x, rad in zip(ys[pick], xs[pick], rng.uniform(0.8, 3.5, n)):
            cv2.circle(layer, (int(x), int(y)), int(round(rad)), 1.0, -1, lineType=cv2.LINE_AA)
        layer = (layer * mask)[:, :, None] * rng.uniform(0.5, 0.85)
        img *= 1 - layer
        img += layer * dark * 0.6
    if rng.random() < 0.3:  # pigment-network-like mesh
        f = rng.uniform(0.35, 0.7)
        yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
        warp = _smooth_noise(rng, s, s, 6)[:, :, 0] * 2.0
        net = (np.abs(np.sin(xx * f + warp)) < 0.25) | (np.abs(np.sin(yy * f - warp)) < 0.25)
        net = (net & mask).astype(np.float32)[:, :, None] * rng.uniform(0.2, 0.4)
        img *= 1 - net
        img += net * dark * 0.7
    return mask


def _hairs(rng: np.random.Generator, img: np.ndarray) -> None:
    s = img.shape[0]
    n = int(rng.integers(1, 14))
    layer = np.zeros((s, s), np.float32)
    for _ in range(n):
        p0 = rng.uniform(-0.1, 1.1, 2) * s
        ang = rng.uniform(0, 2 * np.pi)
        length = rng.uniform(0.3, 1.1) * s
        p2 = p0 + length * np.array([np.cos(ang), np.sin(ang)])
        ctrl = (p0 + p2) / 2 + rng.normal(0, 0.15 * length, 2)
        t = np.linspace(0, 1, 40)[:, None]
        pts = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * ctrl + t ** 2 * p2  # quadratic Bezier
        cv2.polylines(layer, [np.round(pts * 16).astype(np.int32)], False, 1.0, int(rng.integers(1, 3)),
                      lineType=cv2.LINE_AA, shift=4)
    a = np.clip(layer, 0, 1)[:, :, None] * rng.uniform(0.6, 0.9)
    img *= 1 - a
    img += a * rng.uniform(20, 60)


def _glare(rng: np.random.Generator, img: np.ndarray) -> None:
    s = img.shape[0]
    layer = np.zeros((s, s), np.float32)
    for _ in range(int(rng.integers(1, 6))):
        c = rng.uniform(0.1, 0.9, 2) * s
        cv2.circle(layer, (int(c[0]), int(c[1])), int(rng.integers(1, 4)), 1.0, -1)
    a = cv2.GaussianBlur(layer, (0, 0), 1.2)[:, :, None] * 0.8
    img *= 1 - a
    img += a * 250.0


def make_lesion_sample(rng: np.random.Generator, image_size: int = 256) -> Tuple[np.ndarray, np.ndarray]:
    """One synthetic dermoscopy image and its exact lesion mask.

    Returns:
        image: ``S×S×3`` uint8 RGB; mask: ``S×S`` bool (union of the lesions).
    """
    s = int(image_size)
    img = _skin(rng, s)
    skin_mean = img.reshape(-1, 3).mean(axis=0)
    mask = np.zeros((s, s), dtype=bool)
    n_lesions = int(rng.choice([1, 2, 3], p=[0.6, 0.3, 0.1]))
    for i in range(n_lesions):
        if i == 0:
            center = (s / 2 + rng.uniform(-0.15, 0.15) * s, s / 2 + rng.uniform(-0.15, 0.15) * s)
            radius = rng.uniform(0.12, 0.3) * s
        else:
            center = tuple(rng.uniform(0.15, 0.85, 2) * s)
            radius = rng.uniform(0.04, 0.11) * s
        mask |= _draw_lesion(rng, img, skin_mean, _lesion_polygon(rng, center, radius))
    if rng.random() < 0.65:
        _hairs(rng, img)
    if rng.random() < 0.3:
        _glare(rng, img)
    img = _vignette(rng, img)
    img = cv2.GaussianBlur(img, (0, 0), 0.6)  # optics
    return np.clip(img + 0.5, 0, 255).astype(np.uint8), mask


def synthetic_cache_root() -> str:
    """``$SKINFORMER_CACHE`` or ``~/.cache/skinformer`` (read at call time)."""
    return os.path.expanduser(os.environ.get(CACHE_ENV) or os.path.join("~", ".cache", "skinformer"))


def _params_hash(params: Dict) -> str:
    blob = json.dumps(dict(params, version=SYNTHETIC_VERSION), sort_keys=True).encode()
    return hashlib.sha1(blob).hexdigest()[:12]


def _file_names(split: str, i: int) -> Tuple[str, str]:
    stem = f"synth_{split}_{i:05d}"
    return f"{split}/images/{stem}.png", f"{split}/masks/{stem}_segmentation.png"


def generate_synthetic_lesion(image_size: int = 256, num_train: int = 64, num_val: int = 16, seed: int = 0,
                              root: Optional[str] = None, progress: bool = True) -> str:
    """Generate (once) and return the dataset folder ``<root>/synthetic_lesion/<hash>``.

    ``root`` defaults to :func:`synthetic_cache_root`. Layout: ``{train,val}/images/*.png`` (RGB)
    and ``{train,val}/masks/*_segmentation.png`` (0/255) plus ``params.json``.
    """
    from PIL import Image
    from tqdm import tqdm

    params = {"image_size": int(image_size), "num_train": int(num_train), "num_val": int(num_val), "seed": int(seed)}
    base = os.path.join(root or synthetic_cache_root(), "synthetic_lesion")
    final = os.path.join(base, _params_hash(params))
    if os.path.isdir(final):
        return final
    os.makedirs(base, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".tmp-", dir=base)
    try:
        counts = {"train": num_train, "val": num_val}
        bar = tqdm(total=num_train + num_val, desc="Generating synthetic_lesion", disable=not progress,
                   leave=False)
        for split, n in counts.items():
            os.makedirs(os.path.join(tmp, split, "images"))
            os.makedirs(os.path.join(tmp, split, "masks"))
            for i in range(n):
                rng = np.random.default_rng([int(seed), _SPLIT_IDS[split], i])
                image, mask = make_lesion_sample(rng, image_size)
                img_rel, mask_rel = _file_names(split, i)
                # PNG: lossless and byte-identical for identical arrays
                Image.fromarray(image).save(os.path.join(tmp, img_rel), compress_level=1)
                Image.fromarray(mask.astype(np.uint8) * 255).save(os.path.join(tmp, mask_rel), compress_level=1)
                bar.update(1)
        bar.close()
        with open(os.path.join(tmp, "params.json"), "w") as f:
            json.dump(dict(params, version=SYNTHETIC_VERSION), f, indent=1, sort_keys=True)
        os.chmod(tmp, 0o755)  # mkdtemp creates 0o700
        try:
            os.rename(tmp, final)
        except OSError:
            if not os.path.isdir(final):  # not a lost race with another process: a real error
                raise
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    logger.info("Synthetic lesion dataset written to %s", final)
    return final


def load_synthetic_lesion(split: str, image_size: int = 256, num_train: int = 64, num_val: int = 16,
                          seed: int = 0, root: Optional[str] = None) -> List[Dict]:
    """Dataset dicts of ``split`` ("train" | "val"), generating the files first if needed."""
    if split not in _SPLIT_IDS:
        raise ValueError(f"synthetic_lesion: unknown split '{split}'; expected one of {list(_SPLIT_IDS)}")
    folder = generate_synthetic_lesion(image_size, num_train, num_val, seed, root)
    n = num_train if split == "train" else num_val
    out = []
    for i in range(n):
        img_rel, mask_rel = _file_names(split, i)
        out.append({
            "file_name": os.path.join(folder, img_rel),
            "sem_seg_file_name": os.path.join(folder, mask_rel),
            "height": int(image_size),
            "width": int(image_size),
            "image_id": f"synth_{split}_{i:05d}",
        })
    return out


def register_synthetic_lesion(prefix: str = "synthetic_lesion", image_size: int = 256, num_train: int = 64,
                              num_val: int = 16, seed: int = 0, root: Optional[str] = None) -> List[str]:
    """Register ``<prefix>_train`` and ``<prefix>_val`` (files are generated on first use).

    Metadata: classes ["lesion"], ignore_label 255, has_background_class False, evaluator_type
    "isic_task1", mapper "SemanticMapper", mask_encoding "binary".
    """
    from skinformer.data.catalog import DatasetCatalog, MetadataCatalog

    names = []
    for split in ("train", "val"):
        name = f"{prefix}_{split}"

        def load(split=split):
            return load_synthetic_lesion(split, image_size, num_train, num_val, seed, root)

        DatasetCatalog.register(name, load)
        MetadataCatalog.get(name).set(
            classes=["lesion"], ignore_label=255, has_background_class=False, evaluator_type="isic_task1",
            mapper="SemanticMapper", mask_encoding="binary", palette=[[220, 20, 60]],
        )
        names.append(name)
    return names
