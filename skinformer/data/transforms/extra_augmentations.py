"""Augmentations of the original per-pixel projects: shrink-and-paste on a border-colour canvas, grid /
barrel / pincushion distortion, sharpening, colour jitter with set magnitudes, random low-res crop.

The geometric and photometric kernels are albumentations' (``GridDistortion``,
``OpticalDistortion``, ``Sharpen``, ``ColorJitter``), which warp masks with nearest interpolation;
each :class:`AlbumentationsTransform` stores one albumentations op plus a seed drawn from the
sample's generator, so the image and every mask get the same parameters and a run stays
reproducible (the repository's per-sample ``rng`` contract). Pixels brought in from outside the
image get ``seg_fill`` (the ignore label; False in multi-label masks).
"""
from typing import Optional, Sequence, Tuple

import cv2
import numpy as np

from .augmentation import Augmentation
from .transform import CropTransform, NoOpTransform, PadTransform, ResizeTransform, Transform, TransformList

__all__ = [
    "AlbumentationsTransform", "ShrinkPasteTransform", "RandomShrinkPaste", "RandomGridDistortion",
    "RandomOpticalDistortion", "RandomSharpen", "RandomColorJitter", "RandomLowResCrop",
]


class AlbumentationsTransform(Transform):
    """One albumentations op (``p=1``) replayed with a fixed ``seed``.

    ``geometric``: masks are warped too (same seed -> same parameters as the image; albumentations
    draws them from the seed and the array size only); otherwise masks are unchanged.
    """

    def __init__(self, op, seed: int, geometric: bool):
        super().__init__()
        import albumentations as A

        self._set_attributes(dict(op=op, seed=int(seed), geometric=geometric))
        self._compose = lambda: A.Compose([op], seed=self.seed)

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        """Apply the op to the image with the fixed seed."""
        return self._compose()(image=np.ascontiguousarray(img))["image"]

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        """Warp an ``H×W`` label map / mask like the image if ``geometric``, keeping its dtype;
        otherwise return it unchanged."""
        if not self.geometric:
            return segmentation
        seg = np.ascontiguousarray(segmentation)
        dtype = seg.dtype
        work = seg.astype(np.int32) if dtype in (np.int64, np.uint32, np.uint64, np.bool_) else seg
        dummy = np.zeros(seg.shape[:2], np.uint8)
        out = self._compose()(image=dummy, mask=work)["mask"]
        return out.astype(dtype)

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        """Coordinates unchanged for photometric ops; raises ``NotImplementedError`` for non-empty coords
        of geometric ones."""
        if self.geometric and len(coords):
            raise NotImplementedError("AlbumentationsTransform: boxes of warped samples are recomputed from the masks")
        return coords

    def inverse(self) -> Transform:
        """Not supported: always raises ``NotImplementedError``."""
        raise NotImplementedError("albumentations warps are not invertible")


def _seed(rng: np.random.Generator) -> int:
    return int(rng.integers(0, 2 ** 31 - 1))


class ShrinkPasteTransform(Transform):
    """Shrink the sample by ``factor`` (nearest, as the original project) and paste it centred on a canvas of
    the original size. The image canvas is the colour of pixel ``anchor`` (default 10 px from the
    bottom-right corner: the skin around the lesion), label maps / masks are filled with their own
    value at that pixel."""

    def __init__(self, h: int, w: int, factor: float, anchor: Optional[Tuple[int, int]] = None):
        super().__init__()
        if not 0 < factor <= 1:
            raise ValueError(f"ShrinkPasteTransform factor must be in (0, 1], got {factor}")
        nh, nw = max(1, int(round(h * factor))), max(1, int(round(w * factor)))
        ay, ax = anchor if anchor is not None else (max(h - 10, 0), max(w - 10, 0))
        self._set_attributes(dict(h=h, w=w, factor=factor, nh=nh, nw=nw, y0=(h - nh) // 2, x0=(w - nw) // 2,
                                  ay=ay, ax=ax))

    def _paste(self, arr: np.ndarray) -> np.ndarray:
        if arr.shape[:2] != (self.h, self.w):
            raise ValueError(f"ShrinkPasteTransform was drawn for {self.h}×{self.w}, got {arr.shape[:2]}")
        src = np.ascontiguousarray(arr.astype(np.int32) if arr.dtype in (np.int64, np.bool_) else arr)
        small = cv2.resize(src, (self.nw, self.nh), interpolation=cv2.INTER_NEAREST)
        if src.ndim == 3 and small.ndim == 2:
            small = small[:, :, None]
        out = np.empty_like(src)
        out[...] = src[self.ay, self.ax]
        out[self.y0:self.y0 + self.nh, self.x0:self.x0 + self.nw] = small
        return out.astype(arr.dtype)

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        """Shrink the image and paste it centred on a canvas of the anchor pixel's colour."""
        return self._paste(img)

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        """Shrink the label map / mask (nearest) and paste it centred on a canvas of its value at the
        anchor pixel."""
        return self._paste(segmentation)

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        """Scale ``N×2`` ``(x, y)`` coordinates by the shrink factor and shift them to the pasted position."""
        sx, sy = self.nw / self.w, self.nh / self.h
        return coords * np.array([sx, sy]) + np.array([self.x0, self.y0])


class RandomShrinkPaste(Augmentation):
    """With probability ``prob``, :class:`ShrinkPasteTransform` by a factor chosen from ``factors``."""

    def __init__(self, factors: Sequence[float] = (0.8,), prob: float = 1.0):
        super().__init__()
        if not factors:
            raise ValueError("INPUT.SHRINK.FACTORS must list at least one factor in (0, 1]")
        self._init(dict(factors=tuple(float(f) for f in factors), prob=prob))

    def get_transform(self, image: np.ndarray, *, rng: np.random.Generator) -> Transform:
        """With probability ``prob``, a :class:`ShrinkPasteTransform` with a factor drawn from
        ``factors``, else a no-op."""
        if rng.random() >= self.prob:
            return NoOpTransform()
        h, w = image.shape[:2]
        return ShrinkPasteTransform(h, w, self.factors[int(rng.integers(len(self.factors)))])


class _AlbumentationsAugmentation(Augmentation):
    geometric = True

    def _op(self, seg_fill: int):
        raise NotImplementedError

    def get_transform(self, image: np.ndarray, *, rng: np.random.Generator) -> Transform:
        if rng.random() >= self.prob:
            return NoOpTransform()
        return AlbumentationsTransform(self._op(), _seed(rng), self.geometric)


class RandomGridDistortion(_AlbumentationsAugmentation):
    """albumentations ``GridDistortion``: a ``num_steps`` grid whose cells are stretched by up to
    ``distort_limit`` (fraction of a cell)."""

    def __init__(self, num_steps: int = 5, distort_limit: float = 0.3, prob: float = 1.0, seg_fill: int = 255):
        super().__init__()
        self._init(dict(num_steps=num_steps, distort_limit=distort_limit, prob=prob, seg_fill=seg_fill))

    def _op(self):
        import albumentations as A

        return A.GridDistortion(num_steps=self.num_steps, distort_limit=self.distort_limit, p=1.0,
                                border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=self.seg_fill)


class RandomOpticalDistortion(_AlbumentationsAugmentation):
    """Radial lens distortion (albumentations ``OpticalDistortion``, camera model) with a coefficient
    drawn from ``limit`` = (min, max) > 0: ``"barrel"`` pulls content towards the centre,
    ``"pincushion"`` pushes it outwards."""

    def __init__(self, kind: str, limit: Sequence[float] = (0.05, 0.3), prob: float = 1.0, seg_fill: int = 255):
        super().__init__()
        if kind not in ("barrel", "pincushion"):
            raise ValueError(f"RandomOpticalDistortion kind must be 'barrel' or 'pincushion', got {kind!r}")
        lo, hi = (float(v) for v in limit)
        if not 0 <= lo <= hi:
            raise ValueError(f"INPUT.{kind.upper()}_DISTORTION.LIMIT must be 0 <= min <= max, got {list(limit)}")
        self._init(dict(kind=kind, limit=(lo, hi), prob=prob, seg_fill=seg_fill))

    def _op(self):
        import albumentations as A

        # albumentations' camera model: k > 0 is barrel, k < 0 pincushion
        lo, hi = self.limit
        rng = (lo, hi) if self.kind == "barrel" else (-hi, -lo)
        return A.OpticalDistortion(distort_limit=rng, mode="camera", p=1.0, border_mode=cv2.BORDER_CONSTANT,
                                   fill=0, fill_mask=self.seg_fill)


class RandomSharpen(_AlbumentationsAugmentation):
    """albumentations ``Sharpen`` (image only): blend with a 3×3 sharpening kernel, ``alpha`` range."""

    geometric = False

    def __init__(self, alpha: Sequence[float] = (0.2, 0.5), lightness: Sequence[float] = (0.5, 1.0),
                 prob: float = 1.0):
        super().__init__()
        self._init(dict(alpha=tuple(alpha), lightness=tuple(lightness), prob=prob))

    def _op(self):
        import albumentations as A

        return A.Sharpen(alpha=self.alpha, lightness=self.lightness, p=1.0)


class RandomColorJitter(_AlbumentationsAugmentation):
    """albumentations ``ColorJitter`` (image only) with the given magnitudes: brightness, contrast,
    saturation factors in ``[1 - m, 1 + m]``, hue shift in ``[-hue, hue]`` (fraction of a turn,
    <= 0.5), applied in random order — torchvision's ``ColorJitter`` semantics."""

    geometric = False

    def __init__(self, brightness: float = 0.0, contrast: float = 0.0, saturation: float = 0.0, hue: float = 0.0,
                 prob: float = 1.0):
        super().__init__()
        if not 0 <= hue <= 0.5 or min(brightness, contrast, saturation) < 0:
            raise ValueError("INPUT.COLOR_JITTER: magnitudes must be >= 0 and HUE <= 0.5, got "
                             f"{(brightness, contrast, saturation, hue)}")
        self._init(dict(brightness=brightness, contrast=contrast, saturation=saturation, hue=hue, prob=prob))

    def _op(self):
        import albumentations as A

        rng = lambda m: (max(0.0, 1 - m), 1 + m)  # noqa: E731
        return A.ColorJitter(brightness=rng(self.brightness), contrast=rng(self.contrast),
                             saturation=rng(self.saturation), hue=(-self.hue, self.hue), p=1.0)


class RandomLowResCrop(Augmentation):
    """Downscale the whole sample by a factor drawn from ``scale`` = (min, max) (area interpolation
    for the image, nearest for masks), then take a random ``crop_size`` (H, W) window of that
    low-resolution copy (padded with 0 / ``seg_fill`` when smaller): lesions are seen whole at a
    coarse scale, as the original projects' "short side 256 (nearest) + random 128 crop" and downsized-image
    training did."""

    def __init__(self, scale: Sequence[float] = (0.25, 0.5), crop_size: Sequence[int] = (128, 128),
                 prob: float = 1.0, seg_fill: int = 255):
        super().__init__()
        lo, hi = (float(v) for v in scale)
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"INPUT.LOW_RES_CROP.SCALE must be 0 < min <= max <= 1, got {list(scale)}")
        self._init(dict(scale=(lo, hi), crop_size=tuple(int(v) for v in crop_size), prob=prob, seg_fill=seg_fill))

    def get_transform(self, image: np.ndarray, *, rng: np.random.Generator) -> Transform:
        """With probability ``prob``: downscale by a factor in ``scale`` (``INTER_AREA``), pad up to
        ``crop_size`` if needed, then take a random ``crop_size`` crop; else a no-op."""
        if rng.random() >= self.prob:
            return NoOpTransform()
        h, w = image.shape[:2]
        s = float(rng.uniform(*self.scale))
        nh, nw = max(1, int(round(h * s))), max(1, int(round(w * s)))
        tfms = [ResizeTransform(h, w, nh, nw, interp=cv2.INTER_AREA)]
        ch, cw = self.crop_size
        ph, pw = max(ch - nh, 0), max(cw - nw, 0)
        if ph or pw:
            tfms.append(PadTransform(0, 0, pw, ph, orig_w=nw, orig_h=nh, pad_value=0, seg_pad_value=self.seg_fill))
            nh, nw = nh + ph, nw + pw
        y0, x0 = int(rng.integers(0, nh - ch + 1)), int(rng.integers(0, nw - cw + 1))
        tfms.append(CropTransform(x0, y0, cw, ch))
        return TransformList(tfms)
