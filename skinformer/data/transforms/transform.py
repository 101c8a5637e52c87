"""Deterministic transforms (fvcore ``Transform`` subclasses) used by the augmentations.

A :class:`fvcore.transforms.Transform` is a *deterministic* operation whose parameters were
drawn by an :class:`~skinformer.data.transforms.Augmentation`. The same object is applied to
every data type of one sample, so image and masks always stay aligned:

* ``apply_image(img)``: ``H×W`` or ``H×W×C`` array (uint8 RGB for images), bilinear where resampling;
* ``apply_segmentation(seg)``: ``H×W`` integer label map, **nearest** resampling, pixels that come from
  outside the input get ``seg_fill`` (the ignore label, 255 by default);
* ``apply_coords(coords)``: ``N×2`` float (x, y) in continuous pixel coordinates (pixel ``i`` covers
  ``[i, i+1)``, as in detectron2), from which fvcore derives ``apply_box`` and ``apply_polygons``.

fvcore's ``HFlipTransform``, ``VFlipTransform``, ``CropTransform``, ``PadTransform``,
``NoOpTransform`` and ``TransformList`` are used as they are; this module adds cv2-based resize,
affine (rotation, shear), elastic deformation and the SSD colour jitter.
"""
from typing import Optional, Sequence, Tuple

import cv2
import numpy as np
from fvcore.transforms.transform import (
    CropTransform,
    HFlipTransform,
    NoOpTransform,
    PadTransform,
    Transform,
    TransformList,
    VFlipTransform,
)

__all__ = [
    "Transform", "TransformList", "NoOpTransform", "HFlipTransform", "VFlipTransform", "CropTransform",
    "PadTransform", "ResizeTransform", "AffineTransform", "RotationTransform", "ShearTransform",
    "ElasticDeformTransform", "ColorAugSSDTransform",
]


def _cv2_seg(seg: np.ndarray, fn):
    """Run a cv2 resampling ``fn`` on a label map of any integer/bool dtype and give the dtype back.

    Older OpenCV builds reject int64/bool; labels always fit in int32.
    """
    dtype = seg.dtype
    if dtype == np.bool_:
        return fn(seg.astype(np.uint8)).astype(bool)
    if dtype in (np.int64, np.uint32, np.uint64):
        return fn(seg.astype(np.int32)).astype(dtype)
    return fn(seg)


def _as_cv2_input(img: np.ndarray) -> np.ndarray:
    # cv2 needs C-contiguous input (fvcore flips return negative-stride views)
    return np.ascontiguousarray(img)


def _border_value(value, img: np.ndarray):
    # cv2 only fills up to 4 channels with a scalar tuple; pass a scalar for >4 channels
    if img.ndim == 3 and img.shape[2] > 4:
        return float(value)
    return (float(value),) * 4


class ResizeTransform(Transform):
    """Resize ``h×w`` to ``new_h×new_w``: bilinear (``interp``) for images, exact nearest for label maps."""

    def __init__(self, h: int, w: int, new_h: int, new_w: int, interp: int = cv2.INTER_LINEAR):
        super().__init__()
        self._set_attributes(locals())

    def _check(self, img: np.ndarray) -> None:
        if img.shape[:2] != (self.h, self.w):
            raise ValueError(
                f"ResizeTransform was created for size {(self.h, self.w)} but got an array of shape {img.shape}"
            )

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        """Resize an ``H×W(×C)`` image to ``new_h×new_w`` with ``interp`` (channel axis kept); returned
        as-is if the size is unchanged."""
        self._check(img)
        if (self.new_h, self.new_w) == (self.h, self.w):
            return img
        if self.interp in (cv2.INTER_NEAREST, cv2.INTER_NEAREST_EXACT):
            return self._nearest(img)
        out = cv2.resize(_as_cv2_input(img), (self.new_w, self.new_h), interpolation=self.interp)
        if img.ndim == 3 and out.ndim == 2:  # cv2 drops a trailing channel of size 1
            out = out[:, :, None]
        return out

    def _nearest(self, arr: np.ndarray) -> np.ndarray:
        # Nearest by index arithmetic (source pixel whose centre is closest), exact for any dtype
        # (cv2 rejects int64/bool label maps in some builds).
        ys = np.minimum(((np.arange(self.new_h) + 0.5) * (self.h / self.new_h)).astype(np.int64), self.h - 1)
        xs = np.minimum(((np.arange(self.new_w) + 0.5) * (self.w / self.new_w)).astype(np.int64), self.w - 1)
        return arr[ys[:, None], xs[None, :]]

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        """Resize a label map / mask to ``new_h×new_w`` with nearest-neighbour sampling."""
        self._check(segmentation)
        return self._nearest(segmentation)

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        """Scale ``N×2`` ``(x, y)`` coordinates in place to the new size."""
        coords[:, 0] = coords[:, 0] * (self.new_w / self.w)
        coords[:, 1] = coords[:, 1] * (self.new_h / self.h)
        return coords

    def inverse(self) -> Transform:
        """Resize back from ``new_h×new_w`` to ``h×w`` with the same interpolation."""
        return ResizeTransform(self.new_h, self.new_w, self.h, self.w, self.interp)


class AffineTransform(Transform):
    """Affine warp ``p' = A p + t`` of an ``h×w`` input to an ``out_h×out_w`` output.

    ``matrix`` is 2×3 in continuous coordinates (the convention of ``apply_coords``); the images
    are warped with the equivalent pixel-centre matrix. Pixels sampled from outside the input
    become ``img_fill`` in images and ``seg_fill`` in label maps.
    """

    def __init__(self, matrix: np.ndarray, h: int, w: int, out_h: int, out_w: int,
                 interp: int = cv2.INTER_LINEAR, img_fill: float = 0, seg_fill: int = 255):
        super().__init__()
        matrix = np.asarray(matrix, dtype=np.float64).reshape(2, 3)
        self._set_attributes(locals())

    def _pixel_matrix(self) -> np.ndarray:
        # continuous x_c = index + 0.5  =>  idx' = A (idx + 0.5) + t - 0.5
        m = self.matrix.copy()
        m[:, 2] = m[:, 2] + m[:, :2].sum(axis=1) * 0.5 - 0.5
        return m

    def _warp(self, img: np.ndarray, interp: int, fill) -> np.ndarray:
        if img.shape[:2] != (self.h, self.w):
            raise ValueError(f"{type(self).__name__} was created for size {(self.h, self.w)}, got {img.shape}")
        out = cv2.warpAffine(
            _as_cv2_input(img), self._pixel_matrix(), (self.out_w, self.out_h), flags=interp,
            borderMode=cv2.BORDER_CONSTANT, borderValue=_border_value(fill, img),
        )
        if img.ndim == 3 and out.ndim == 2:
            out = out[:, :, None]
        return out

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        """Warp the image with the affine matrix, ``interp`` and ``img_fill``."""
        return self._warp(img, self.interp, self.img_fill)

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        """Warp a label map / mask with nearest-neighbour sampling, filling with ``seg_fill``."""
        return _cv2_seg(segmentation, lambda s: self._warp(s, cv2.INTER_NEAREST, self.seg_fill))

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        """Map ``N×2`` ``(x, y)`` coordinates through the affine matrix (float64)."""
        if len(coords) == 0:
            return coords
        coords = np.asarray(coords, dtype=np.float64)
        return coords @ self.matrix[:, :2].T + self.matrix[:, 2]

    def inverse(self) -> Transform:
        """The inverse affine warp, from the output size back to the input size."""
        inv = cv2.invertAffineTransform(self.matrix)
        return AffineTransform(inv, self.out_h, self.out_w, self.h, self.w, self.interp, self.img_fill, self.seg_fill)

    def __repr__(self):
        return (f"{type(self).__name__}(matrix={np.round(self.matrix, 4).tolist()}, size={(self.h, self.w)}"
                f"->{(self.out_h, self.out_w)})")


class RotationTransform(AffineTransform):
    """Rotate by ``angle`` degrees counter-clockwise about ``center`` (default the image centre).

    With ``expand`` the output grows to hold the whole rotated image (the corners are filled),
    otherwise it keeps ``h×w`` and the corners of the input are cut off.
    """

    def __init__(self, h: int, w: int, angle: float, expand: bool = True,
                 center: Optional[Tuple[float, float]] = None, interp: int = cv2.INTER_LINEAR,
                 img_fill: float = 0, seg_fill: int = 255):
        if center is None:
            center = (w / 2.0, h / 2.0)
        m = cv2.getRotationMatrix2D((float(center[0]), float(center[1])), float(angle), 1.0)
        out_h, out_w = h, w
        if expand:
            c, s = abs(m[0, 0]), abs(m[0, 1])
            # round, not ceil: a 90° rotation must give exactly w×h despite float error
            out_w, out_h = int(np.round(h * s + w * c)), int(np.round(h * c + w * s))
            # move the rotated centre to the centre of the enlarged canvas
            m[0, 2] += out_w / 2.0 - center[0]
            m[1, 2] += out_h / 2.0 - center[1]
        super().__init__(m, h, w, out_h, out_w, interp, img_fill, seg_fill)
        self.angle, self.expand, self.center = angle, expand, center


class ShearTransform(AffineTransform):
    """Shear about the image centre, keeping the size: ``x' = x + shear_x (y - cy)``,
    ``y' = y + shear_y (x - cx)`` (``shear_y`` alone is the original project's vertical shear)."""

    def __init__(self, h: int, w: int, shear_x: float = 0.0, shear_y: float = 0.0,
                 interp: int = cv2.INTER_LINEAR, img_fill: float = 0, seg_fill: int = 255):
        a = np.array([[1.0, shear_x], [shear_y, 1.0]])
        c = np.array([w / 2.0, h / 2.0])
        m = np.concatenate([a, (c - a @ c)[:, None]], axis=1)
        super().__init__(m, h, w, h, w, interp, img_fill, seg_fill)
        self.shear_x, self.shear_y = shear_x, shear_y


class ElasticDeformTransform(Transform):
    """Elastic deformation with a fixed displacement field (Simard et al. 2003).

    Output pixel ``(y, x)`` samples the input at ``(y + dy[y, x], x + dx[y, x])``: bilinear for
    images, nearest for label maps, replicating the border (as ``map_coordinates(mode="nearest")``
    in the original project). The SAME field is used for the image and every mask.

    Args:
        dx, dy: ``H×W`` float32 displacement fields in pixels.
    """

    def __init__(self, dx: np.ndarray, dy: np.ndarray, interp: int = cv2.INTER_LINEAR):
        super().__init__()
        dx = np.asarray(dx, dtype=np.float32)
        dy = np.asarray(dy, dtype=np.float32)
        if dx.shape != dy.shape or dx.ndim != 2:
            raise ValueError(f"dx and dy must be H×W arrays of the same shape, got {dx.shape} and {dy.shape}")
        self._set_attributes(locals())

    def _maps(self):
        h, w = self.dx.shape
        grid_y, grid_x = np.mgrid[0:h, 0:w].astype(np.float32)
        return grid_x + self.dx, grid_y + self.dy

    def _remap(self, img: np.ndarray, interp: int) -> np.ndarray:
        if img.shape[:2] != self.dx.shape:
            raise ValueError(f"ElasticDeformTransform field has shape {self.dx.shape}, got an array of shape {img.shape}")
        mx, my = self._maps()
        out = cv2.remap(_as_cv2_input(img), mx, my, interpolation=interp, borderMode=cv2.BORDER_REPLICATE)
        if img.ndim == 3 and out.ndim == 2:
            out = out[:, :, None]
        return out

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        """Remap the image through the displacement field with ``interp``."""
        return self._remap(img, self.interp)

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        """Remap a label map / mask through the displacement field with nearest-neighbour sampling."""
        return _cv2_seg(segmentation, lambda s: self._remap(s, cv2.INTER_NEAREST))

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        """First-order approximation ``p' = p - d(p)`` (the field is smooth). Boxes of deformed
        objects should rather be recomputed from the deformed masks."""
        if len(coords) == 0:
            return coords
        h, w = self.dx.shape
        xi = np.clip(np.floor(coords[:, 0]).astype(np.int64), 0, w - 1)
        yi = np.clip(np.floor(coords[:, 1]).astype(np.int64), 0, h - 1)
        coords = np.asarray(coords, dtype=np.float64).copy()
        coords[:, 0] -= self.dx[yi, xi]
        coords[:, 1] -= self.dy[yi, xi]
        return coords

    def __repr__(self):
        return f"ElasticDeformTransform(field={self.dx.shape}, max_disp={float(np.abs(self.dx).max(initial=0)):.1f})"


class ColorAugSSDTransform(Transform):
    """SSD-style photometric distortion with parameters fixed in advance (image only).

    Args:
        brightness_delta: added to every pixel, or ``None`` to skip.
        ops: ordered list of ``(name, value)`` with name ``"contrast"`` / ``"saturation"``
            (multiplicative factor) or ``"hue"`` (shift on OpenCV's 0–180 hue scale).
        img_format: ``"RGB"`` or ``"BGR"`` (only matters for the HSV conversion).

    Masks, boxes and coordinates are returned unchanged.
    """

    def __init__(self, brightness_delta: Optional[float] = None, ops: Sequence[Tuple[str, float]] = (),
                 img_format: str = "RGB"):
        super().__init__()
        ops = [(str(n), float(v)) for n, v in ops]
        for n, _ in ops:
            if n not in self._OPS:
                raise ValueError(f"ColorAugSSDTransform: unknown op '{n}'; expected one of {sorted(self._OPS)}")
        if img_format not in ("RGB", "BGR"):
            raise ValueError(f"ColorAugSSDTransform: img_format must be 'RGB' or 'BGR', got '{img_format}'")
        self._set_attributes(locals())

    @staticmethod
    def _convert(img: np.ndarray, alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
        # uint8 in, uint8 out: a 256-entry lookup table computed with the float32 arithmetic of
        # ``clip(float32(x) * alpha + beta, 0, 255)`` gives the same bytes without a float image
        table = np.clip(np.arange(256, dtype=np.float32) * alpha + beta, 0, 255).astype(np.uint8)
        return cv2.LUT(_as_cv2_input(img), table)

    def _hsv(self, img: np.ndarray, fn) -> np.ndarray:
        to_hsv, from_hsv = ((cv2.COLOR_RGB2HSV, cv2.COLOR_HSV2RGB) if self.img_format == "RGB"
                            else (cv2.COLOR_BGR2HSV, cv2.COLOR_HSV2BGR))
        hsv = cv2.cvtColor(_as_cv2_input(img), to_hsv)
        hsv = fn(hsv)
        return cv2.cvtColor(hsv, from_hsv)

    def _contrast(self, img, v):
        return self._convert(img, alpha=v)

    def _saturation(self, img, v):
        def f(hsv):
            hsv[:, :, 1] = self._convert(hsv[:, :, 1], alpha=v)
            return hsv
        return self._hsv(img, f)

    def _hue(self, img, v):
        def f(hsv):
            # OpenCV's uint8 hue is 0..179; entries above are never looked up
            table = ((np.arange(256, dtype=np.int32) + int(v)) % 180).astype(np.uint8)
            hsv[:, :, 0] = cv2.LUT(np.ascontiguousarray(hsv[:, :, 0]), table)
            return hsv
        return self._hsv(img, f)

    _OPS = {"contrast": "_contrast", "saturation": "_saturation", "hue": "_hue"}

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        """Apply the brightness shift and the sampled ops in order to an ``H×W×3`` uint8 image
        (raises ``ValueError`` otherwise)."""
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"ColorAugSSDTransform needs an H×W×3 uint8 image, got {img.dtype} {img.shape}")
        if self.brightness_delta is not None:
            img = self._convert(img, beta=self.brightness_delta)
        for name, v in self.ops:
            img = getattr(self, self._OPS[name])(img, v)
        return img

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        """Photometric only: the label map is returned unchanged."""
        return segmentation

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        """Photometric only: coordinates are returned unchanged."""
        return coords

    def inverse(self) -> Transform:
        """A :class:`NoOpTransform` (geometry is unchanged)."""
        return NoOpTransform()
