"""Augmentations (random policies). Each draws its parameters from the given ``rng`` and returns a
deterministic transform from :mod:`.transform` (or fvcore).

Label maps are resampled with nearest neighbour and pixels coming from outside the image get
``seg_fill``/``seg_pad_value`` (the ignore label). Image padding/fill values are documented per class.
"""
import sys
from typing import Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from .augmentation import Augmentation
from .transform import (
    ColorAugSSDTransform,
    CropTransform,
    ElasticDeformTransform,
    HFlipTransform,
    NoOpTransform,
    PadTransform,
    ResizeTransform,
    RotationTransform,
    ShearTransform,
    Transform,
    TransformList,
    VFlipTransform,
)

__all__ = [
    "Resize", "ResizeShortestEdge", "RandomCrop", "RandomCropCategoryAreaConstraint", "FixedSizeCrop", "ResizeScale",
    "RandomFlip", "RandomRotation", "ColorAugSSD", "ElasticTransform", "RandomShear", "PadToDivisible",
]

_SAMPLE_STYLES = ("range", "choice")


def _check_sample_style(name: str, style: str, values: Sequence) -> None:
    if style not in _SAMPLE_STYLES:
        raise ValueError(f"{name}: sample_style must be one of {_SAMPLE_STYLES}, got '{style}'")
    if style == "range" and len(values) != 2:
        raise ValueError(f"{name}: sample_style 'range' needs exactly two values [min, max], got {list(values)}")


class Resize(Augmentation):
    """Resize to a fixed ``shape`` (H, W) whatever the input's aspect ratio (a squash, like the
    preprocessing of datasets stored at a fixed size). Shrinking uses ``cv2.INTER_AREA`` (a
    4288-px original resampled bilinearly to 256 px would alias), enlarging ``interp``; label maps
    are always resampled with nearest neighbour. An input already at ``shape`` is left unchanged."""

    def __init__(self, shape: Sequence[int], interp: int = cv2.INTER_LINEAR):
        super().__init__()
        shape = tuple(int(s) for s in shape)
        if len(shape) != 2 or min(shape) <= 0:
            raise ValueError(f"Resize: shape must be two positive ints (H, W), got {shape}")
        self._init(locals())

    def get_transform(self, image: np.ndarray, *, rng: np.random.Generator) -> Transform:
        """Resize to the fixed ``shape`` (``INTER_AREA`` when shrinking both sides); a no-op if the size
        already matches."""
        h, w = image.shape[:2]
        new_h, new_w = self.shape
        if (h, w) == (new_h, new_w):
            return NoOpTransform()
        interp = cv2.INTER_AREA if new_h <= h and new_w <= w else self.interp
        return ResizeTransform(h, w, new_h, new_w, interp)


class ResizeShortestEdge(Augmentation):
    """Resize so the shorter side is ``short_edge_length`` (drawn per sample), the longer side at
    most ``max_size``. ``sample_style="choice"`` picks one of the values, ``"range"`` an int in
    ``[min, max]``. A drawn length of 0 leaves the image unchanged."""

    def __init__(self, short_edge_length: Union[int, Sequence[int]], max_size: int = sys.maxsize,
                 sample_style: str = "range", interp: int = cv2.INTER_LINEAR):
        super().__init__()
        if isinstance(short_edge_length, int):
            short_edge_length = (short_edge_length, short_edge_length)
        short_edge_length = tuple(int(s) for s in short_edge_length)
        if sample_style == "range" and len(short_edge_length) == 1:
            short_edge_length = short_edge_length * 2
        _check_sample_style("ResizeShortestEdge", sample_style, short_edge_length)
        self._init(locals())

    def get_transform(self, image: np.ndarray, *, rng: np.random.Generator) -> Transform:
        """Resize so the short edge is a sampled length (capped by ``max_size``); a sampled length of 0
        gives a no-op."""
        h, w = image.shape[:2]
        if self.sample_style == "range":
            size = int(rng.integers(self.short_edge_length[0], self.short_edge_length[1] + 1))
        else:
            size = int(self.short_edge_length[int(rng.integers(len(self.short_edge_length)))])
        if size == 0:
            return NoOpTransform()
        newh, neww = self.get_output_shape(h, w, size, self.max_size)
        return ResizeTransform(h, w, newh, neww, self.interp)

    @staticmethod
    def get_output_shape(h: int, w: int, short_edge_length: int, max_size: int) -> Tuple[int, int]:
        """``(newh, neww)`` with the short edge scaled to ``short_edge_length`` and the long edge at most
        ``max_size``, rounded to the nearest integer."""
        scale = short_edge_length / min(h, w)
        newh, neww = h * scale, w * scale
        if max(newh, neww) > max_size:
            scale = max_size / max(newh, neww)
            newh, neww = newh * scale, neww * scale
        return int(newh + 0.5), int(neww + 0.5)


class ResizeScale(Augmentation):
    """Large-scale jitter: scale the image so it fits ``target_height×target_width`` times a random
    factor in ``[min_scale, max_scale]`` (aspect ratio kept). Usually followed by :class:`FixedSizeCrop`."""

    def __init__(self, min_scale: float, max_scale: float, target_height: int, target_width: int,
                 interp: int = cv2.INTER_LINEAR):
        super().__init__()
        if not 0 < min_scale <= max_scale:
            raise ValueError(f"ResizeScale: need 0 < min_scale <= max_scale, got {min_scale}, {max_scale}")
        self._init(locals())

    def get_transform(self, image: np.ndarray, *, rng: np.random.Generator) -> Transform:
        """Resize by a random scale in ``[min_scale, max_scale]`` times the factor that fits the image into
        the target size, keeping the aspect ratio."""
        h, w = image.shape[:2]
        s = rng.uniform(self.min_scale, self.max_scale)
        factor = min(self.target_height * s / h, self.target_width * s / w)
        newh, neww = max(1, int(round(h * factor))), max(1, int(round(w * factor)))
        return ResizeTransform(h, w, newh, neww, self.interp)


_CROP_TYPES = ("relative_range", "relative", "absolute", "absolute_range")


class RandomCrop(Augmentation):
    """Random crop of a size given by ``crop_type``:

    * ``"relative"``: ``(H*crop_size[0], W*crop_size[1])``;
    * ``"relative_range"``: uniform in ``[crop_size, 1]`` of H and W;
    * ``"absolute"``: ``crop_size`` pixels (clipped to the image: smaller images are not cropped
      on that side — pad afterwards if a fixed size is needed);
    * ``"absolute_range"``: ``h`` in ``[crop_size[0], min(H, crop_size[1])]``, same for ``w``.
    """

    def __init__(self, crop_type: str, crop_size: Sequence[float]):
        super().__init__()
        if crop_type not in _CROP_TYPES:
            raise ValueError(f"RandomCrop: crop_type must be one of {_CROP_TYPES}, got '{crop_type}'")
        crop_size = tuple(crop_size)
        if len(crop_size) != 2:
            raise ValueError(f"RandomCrop: crop_size must be (h, w), got {crop_size}")
        if crop_type.startswith("relative") and not all(0 < c <= 1 for c in crop_size):
            raise ValueError(f"RandomCrop: relative crop_size must be in (0, 1], got {crop_size}")
        self._init(locals())

    def get_crop_size(self, image_size: Tuple[int, int], rng: np.random.Generator) -> Tuple[int, int]:
        """Crop ``(h, w)`` for an image of ``image_size`` according to ``crop_type`` (relative,
        relative_range, absolute or absolute_range), never larger than the image."""
        h, w = image_size
        ch, cw = self.crop_size
        if self.crop_type == "relative":
            return max(1, int(h * ch + 0.5)), max(1, int(w * cw + 0.5))
        if self.crop_type == "relative_range":
            rh, rw = rng.uniform(ch, 1.0), rng.uniform(cw, 1.0)
            return max(1, int(h * rh + 0.5)), max(1, int(w * rw + 0.5))
        if self.crop_type == "absolute":
            return min(int(ch), h), min(int(cw), w)
        # absolute_range: crop_size = (min, max) for both sides
        lo, hi = int(ch), int(cw)
        sh = int(rng.integers(min(h, lo), min(h, hi) + 1))
        sw = int(rng.integers(min(w, lo), min(w, hi) + 1))
        return sh, sw

    def _crop_at_random(self, h: int, w: int, ch: int, cw: int, rng: np.random.Generator) -> CropTransform:
        y0 = int(rng.integers(0, h - ch + 1))
        x0 = int(rng.integers(0, w - cw + 1))
        return CropTransform(x0, y0, cw, ch, orig_w=w, orig_h=h)

    def get_transform(self, image: np.ndarray, *, rng: np.random.Generator) -> Transform:
        """Crop of :meth:`get_crop_size` at a random position inside the image."""
        h, w = image.shape[:2]
        ch, cw = self.get_crop_size((h, w), rng)
        return self._crop_at_random(h, w, ch, cw, rng)


class RandomCropCategoryAreaConstraint(RandomCrop):
    """Random crop in which no single category covers more than ``single_category_max_area`` of
    the (non-ignored) pixels; up to 10 tries, then the last crop is kept (Mask2Former's rule).
    With ``single_category_max_area >= 1`` it is a plain :class:`RandomCrop`."""

    input_args = ("image", "sem_seg")

    def __init__(self, crop_type: str, crop_size: Sequence[float], single_category_max_area: float = 1.0,
                 ignored_category: Optional[int] = 255):
        super().__init__(crop_type, crop_size)
        self.single_category_max_area = single_category_max_area
        self.ignored_category = ignored_category

    def get_transform(self, image: np.ndarray, sem_seg: Optional[np.ndarray] = None, *,
                      rng: np.random.Generator) -> Transform:
        """Random crop, retried up to 10 times until it holds more than one (non-ignored) category and
        none covers ``single_category_max_area`` of it; otherwise the last try is returned."""
        h, w = image.shape[:2]
        if self.single_category_max_area >= 1.0 or sem_seg is None:
            return super().get_transform(image, rng=rng)
        tfm = None
        for _ in range(10):
            ch, cw = self.get_crop_size((h, w), rng)
            tfm = self._crop_at_random(h, w, ch, cw, rng)
            crop = sem_seg[tfm.y0:tfm.y0 + ch, tfm.x0:tfm.x0 + cw]
            labels, counts = np.unique(crop, return_counts=True)
            if self.ignored_category is not None:
                counts = counts[labels != self.ignored_category]
            if len(counts) > 1 and counts.max() < self.single_category_max_area * counts.sum():
                break
        return tfm


class FixedSizeCrop(Augmentation):
    """Crop to exactly ``crop_size`` (h, w): a random crop where the image is larger, then padding
    at the right/bottom where it is smaller. Image padding ``pad_value`` (128 = mid-grey, as in
    detectron2's LSJ), label-map padding ``seg_pad_value`` (the ignore label)."""

    def __init__(self, crop_size: Tuple[int, int], pad: bool = True, pad_value: float = 128.0,
                 seg_pad_value: int = 255):
        super().__init__()
        crop_size = tuple(int(c) for c in crop_size)
        self._init(locals())

    def get_transform(self, image: np.ndarray, *, rng: np.random.Generator) -> Transform:
        """Crop ``crop_size`` at a random position; if the image is smaller and ``pad`` is set, pad the
        crop right/bottom to ``crop_size``."""
        h, w = image.shape[:2]
        th, tw = self.crop_size
        max_y, max_x = max(h - th, 0), max(w - tw, 0)
        y0 = int(round(max_y * rng.uniform(0.0, 1.0)))
        x0 = int(round(max_x * rng.uniform(0.0, 1.0)))
        ch, cw = min(th, h), min(tw, w)
        tfms = [CropTransform(x0, y0, cw, ch, orig_w=w, orig_h=h)]
        if self.pad and (ch < th or cw < tw):
            tfms.append(PadTransform(0, 0, tw - cw, th - ch, orig_w=cw, orig_h=ch,
                                     pad_value=self.pad_value, seg_pad_value=self.seg_pad_value))
        return TransformList(tfms)


class PadToDivisible(Augmentation):
    """Pad at the right/bottom so both sides are multiples of ``size_divisibility`` (no-op if <= 0).

    Mappers pad the image with ``pad_value`` 0 (black, like the rotation/shear fill) and the label
    map with ``seg_pad_value`` = the ignore label, so padding never counts in losses or metrics.
    """

    def __init__(self, size_divisibility: int, pad_value: float = 0.0, seg_pad_value: int = 255):
        super().__init__()
        self._init(locals())

    def get_transform(self, image: np.ndarray, *, rng: np.random.Generator) -> Transform:
        """Pad right/bottom so height and width are multiples of ``size_divisibility``; a no-op if they
        already are or it is <= 0."""
        d = int(self.size_divisibility)
        h, w = image.shape[:2]
        if d <= 0 or (h % d == 0 and w % d == 0):
            return NoOpTransform()
        ph, pw = (-h) % d, (-w) % d
        return PadTransform(0, 0, pw, ph, orig_w=w, orig_h=h, pad_value=self.pad_value,
                            seg_pad_value=self.seg_pad_value)


class RandomFlip(Augmentation):
    """Flip horizontally (default) or vertically with probability ``prob``."""

    def __init__(self, prob: float = 0.5, *, horizontal: bool = True, vertical: bool = False):
        super().__init__()
        if horizontal == vertical:
            raise ValueError("RandomFlip: set exactly one of horizontal/vertical (use two RandomFlip for both)")
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"RandomFlip: prob must be in [0, 1], got {prob}")
        self._init(locals())

    def get_transform(self, image: np.ndarray, *, rng: np.random.Generator) -> Transform:
        """Horizontal (or vertical) flip with probability ``prob``, else a no-op."""
        h, w = image.shape[:2]
        if rng.random() >= self.prob:
            return NoOpTransform()
        return HFlipTransform(w) if self.horizontal else VFlipTransform(h)


class RandomRotation(Augmentation):
    """Rotate by an angle (degrees, counter-clockwise) with probability ``prob`` decided PER SAMPLE.

    ``angle``: ``[min, max]`` with ``sample_style="range"`` or a list of angles with ``"choice"``.
    ``expand`` enlarges the canvas to keep the whole image. Uncovered corners get ``img_fill``
    (0, black) in the image and ``seg_fill`` (ignore label) in label maps.
    """

    def __init__(self, angle: Sequence[float], expand: bool = True, center: Optional[Tuple[float, float]] = None,
                 sample_style: str = "range", prob: float = 1.0, img_fill: float = 0, seg_fill: int = 255,
                 interp: int = cv2.INTER_LINEAR):
        super().__init__()
        if isinstance(angle, (int, float)):
            angle = (float(angle), float(angle))
        angle = tuple(float(a) for a in angle)
        _check_sample_style("RandomRotation", sample_style, angle)
        self._init(locals())

    def get_transform(self, image: np.ndarray, *, rng: np.random.Generator) -> Transform:
        """With probability ``prob``, a rotation by an angle sampled from ``angle``; a no-op otherwise or
        for multiples of 360°."""
        h, w = image.shape[:2]
        if rng.random() >= self.prob:
            return NoOpTransform()
        if self.sample_style == "range":
            angle = float(rng.uniform(self.angle[0], self.angle[1]))
        else:
            angle = float(self.angle[int(rng.integers(len(self.angle)))])
        if angle % 360 == 0:
            return NoOpTransform()
        return RotationTransform(h, w, angle, expand=self.expand, center=self.center, interp=self.interp,
                                 img_fill=self.img_fill, seg_fill=self.seg_fill)


class RandomShear(Augmentation):
    """Centred shear with probability ``prob``; factors uniform in ``[-max_shear, max_shear]``
    for each enabled direction (``vertical`` is the original project's ``y' = y + s (x - W/2)``).
    Image size is kept; uncovered pixels get ``img_fill`` / ``seg_fill``."""

    def __init__(self, max_shear: float = 0.2, prob: float = 1.0, *, horizontal: bool = True,
                 vertical: bool = True, img_fill: float = 0, seg_fill: int = 255, interp: int = cv2.INTER_LINEAR):
        super().__init__()
        if not (horizontal or vertical):
            raise ValueError("RandomShear: enable at least one of horizontal/vertical")
        self._init(locals())

    def get_transform(self, image: np.ndarray, *, rng: np.random.Generator) -> Transform:
        """With probability ``prob``, a shear with factors uniform in ``±max_shear`` along the enabled
        axes, else a no-op."""
        h, w = image.shape[:2]
        if rng.random() >= self.prob:
            return NoOpTransform()
        sx = float(rng.uniform(-self.max_shear, self.max_shear)) if self.horizontal else 0.0
        sy = float(rng.uniform(-self.max_shear, self.max_shear)) if self.vertical else 0.0
        return ShearTransform(h, w, sx, sy, interp=self.interp, img_fill=self.img_fill, seg_fill=self.seg_fill)


class ElasticTransform(Augmentation):
    """Simard elastic deformation with probability ``prob``: displacement fields ``dx, dy`` uniform
    in ``[-1, 1]`` per pixel, smoothed by a Gaussian of std ``sigma`` and scaled by ``alpha`` (pixels).
    The SAME field is applied to the image (bilinear) and the masks (nearest), unlike the original project
    project whose mask drew its own field."""

    def __init__(self, alpha: float = 1300.0, sigma: float = 8.0, prob: float = 1.0,
                 interp: int = cv2.INTER_LINEAR):
        super().__init__()
        if sigma <= 0:
            raise ValueError(f"ElasticTransform: sigma must be > 0, got {sigma}")
        self._init(locals())

    def get_transform(self, image: np.ndarray, *, rng: np.random.Generator) -> Transform:
        """With probability ``prob``, an elastic deformation: two ``H×W`` uniform noise fields blurred by
        a Gaussian of ``sigma`` and scaled by ``alpha``; else a no-op."""
        h, w = image.shape[:2]
        if rng.random() >= self.prob:
            return NoOpTransform()
        fields = []
        for _ in range(2):
            f = rng.uniform(-1.0, 1.0, size=(h, w)).astype(np.float32)
            f = cv2.GaussianBlur(f, (0, 0), sigmaX=self.sigma, sigmaY=self.sigma, borderType=cv2.BORDER_REFLECT)
            fields.append(f * self.alpha)
        return ElasticDeformTransform(fields[0], fields[1], interp=self.interp)


class ColorAugSSD(Augmentation):
    """SSD photometric distortion (image only; masks untouched), as in Mask2Former:

    brightness ``±brightness_delta`` with p 0.5; then, with p 0.5, the order (contrast, saturation,
    hue) or else (saturation, hue, contrast); each step fires with p 0.5. Contrast and saturation
    factors are uniform in ``contrast_range`` / ``saturation_range``; hue shift an integer in
    ``±hue_delta`` on OpenCV's 0–180 scale.
    """

    def __init__(self, img_format: str = "RGB", brightness_delta: float = 32,
                 contrast_range: Tuple[float, float] = (0.5, 1.5),
                 saturation_range: Tuple[float, float] = (0.5, 1.5), hue_delta: int = 18):
        super().__init__()
        self._init(locals())

    def get_transform(self, image: np.ndarray, *, rng: np.random.Generator) -> Transform:
        """Sample SSD-style photometric distortions: brightness (p=0.5), then contrast, saturation and
        hue (each p=0.5) with contrast either first or last."""
        brightness = None
        if rng.random() < 0.5:
            brightness = float(rng.uniform(-self.brightness_delta, self.brightness_delta))
        order = ("contrast", "saturation", "hue") if rng.random() < 0.5 else ("saturation", "hue", "contrast")
        ops = []
        for name in order:
            if rng.random() >= 0.5:
                continue
            if name == "hue":
                ops.append((name, int(rng.integers(-self.hue_delta, self.hue_delta + 1))))
            else:
                lo, hi = self.contrast_range if name == "contrast" else self.saturation_range
                ops.append((name, float(rng.uniform(lo, hi))))
        return ColorAugSSDTransform(brightness, ops, img_format=self.img_format)
