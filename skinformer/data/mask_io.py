"""Reading images and masks with explicit encodings and errors that name the file.

Mask encodings (metadata ``mask_encoding``):

* ``"binary"``: foreground/background masks stored as 0/1 or 0/255 PNG, soft grey maps, or JPEG
  with compression grey levels. Values ``> 0`` are foreground when the mask's maximum is 1, otherwise
  values ``> 127`` (so 0/255 and JPEG masks are accepted and mapped; the tolerance absorbs JPEG
  noise). Colour masks use the brightest channel per pixel, so any saturated colour (a pure red
  lesion) is foreground. Small label values ``{0, 1, 2, ...}`` with a maximum of 2..15 (a label map
  saved by hand) are an error naming the file and the values, not "all background".
* ``"index"``: single-channel PNG whose values are class ids ``0..K-1`` or ``ignore_label``.
* ``"gray_values"``: colour or grey PNG converted to 8-bit luma (ITU-R 601, PIL ``"L"``), each
  grey value mapped to a class by ``metadata.gray_values`` (Seg-VoFo); unknown values are an error.
* ``"mat"``: MATLAB ``.mat`` file holding an index map in variable ``metadata.mat_key`` (``"smgt"``).

Decoded label maps hold ``0..K-1`` for classes, ``K`` for background when background is not a
class (:attr:`~skinformer.structures.LabelSpace.background_label`) and ``ignore_label`` for ignored
pixels. Metadata defaults are those of :meth:`~skinformer.structures.LabelSpace.from_metadata`.
"""
import os
from typing import Dict, Optional

import numpy as np
from PIL import Image, ImageFile

__all__ = [
    "DataFileError", "read_image", "read_mask_array", "read_sem_seg", "decode_binary", "read_binary_mask",
    "to_single_channel",
    "label_map_from_binary", "MASK_ENCODINGS",
]

MASK_ENCODINGS = ("binary", "index", "gray_values", "mat")


class DataFileError(ValueError):
    """A data file that cannot be read or does not hold what its dataset declares."""


def read_image(file_name: str, format: str = "RGB") -> np.ndarray:
    """Read an image of any bit depth as ``H×W×3`` uint8 (RGB, or BGR with ``format="BGR"``).

    16-bit images are scaled by ``255 / 65535`` (not clipped: a plain RGB conversion would turn
    every value above 255 into white); 32-bit integer images by the largest value their range
    needs (8 / 16 / 32 bit); float images holding ``[0, 1]`` by 255, ``[0, 255]`` as they are.
    Raises :class:`DataFileError` naming the file if it is missing, unreadable, truncated, or a
    float image outside ``[0, 255]``.
    """
    if not os.path.isfile(file_name):
        raise DataFileError(f"Image file not found: {file_name}")
    try:
        with Image.open(file_name) as img:
            img.load()  # forces decoding so truncated files fail here, not later
            arr = _to_rgb8(img, file_name)
    except (OSError, SyntaxError, ValueError) as e:
        if isinstance(e, DataFileError):
            raise
        raise DataFileError(f"Cannot read image {file_name}: {e}") from e
    if format == "BGR":
        arr = np.ascontiguousarray(arr[:, :, ::-1])
    return arr


def _to_rgb8(img: Image.Image, file_name: str) -> np.ndarray:
    """``H×W×3`` uint8 of a decoded PIL image; high bit depths are rescaled, never clipped."""
    if not (img.mode.startswith("I") or img.mode == "F"):
        return np.array(img.convert("RGB"))  # a writable copy: augmentations modify in place
    values = np.asarray(img)
    if values.dtype.kind == "f":
        finite = values[np.isfinite(values)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
        if finite.size != values.size or lo < 0 or hi > 255:
            raise DataFileError(
                f"{file_name}: float image with values in [{lo:g}, {hi:g}]"
                f"{' and NaN/inf' if finite.size != values.size else ''}; expected [0, 1] or [0, 255]. "
                "Save it as an 8- or 16-bit image.")
        scaled = values * 255.0 if hi <= 1.0 else values
    else:
        hi = int(values.max()) if values.size else 0
        if img.mode.startswith("I;16") or 255 < hi <= 65535:
            full = 65535.0  # 16-bit PNG / TIFF (Pillow may open it as mode "I")
        elif hi <= 255:
            full = 255.0
        else:
            full = float(2 ** 32 - 1)
        if values.min() < 0:
            raise DataFileError(f"{file_name}: signed image with negative values; expected unsigned intensities")
        scaled = values.astype(np.float64) * (255.0 / full)
    grey = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2) if grey.ndim == 2 else np.ascontiguousarray(grey[:, :, :3])


def read_mask_array(file_name: str) -> np.ndarray:
    """Read a mask file as stored (``H×W`` or ``H×W×C``), without conversion."""
    if not os.path.isfile(file_name):
        raise DataFileError(f"Mask file not found: {file_name}")
    if file_name.lower().endswith(".mat"):
        raise DataFileError(f"{file_name} is a MATLAB file; read it with encoding 'mat'")
    try:
        with Image.open(file_name) as img:
            img.load()
            if img.mode in ("P",):
                arr = np.asarray(img)  # palette indices are the labels
            elif img.mode in ("1",):
                arr = np.asarray(img.convert("L"))
            else:
                arr = np.asarray(img)
    except (OSError, SyntaxError, ValueError) as e:
        raise DataFileError(f"Cannot read mask {file_name}: {e}") from e
    return arr


def to_single_channel(arr: np.ndarray, file_name: str, what: str) -> np.ndarray:
    """``H×W`` view of a stored mask: grey colour masks give one channel; ``what="binary"`` colour
    masks their brightest channel; other colour masks are a :class:`DataFileError`."""
    if arr.ndim == 2:
        return arr
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        rgb = arr[:, :, :3]
        if (rgb[:, :, 0] == rgb[:, :, 1]).all() and (rgb[:, :, 1] == rgb[:, :, 2]).all():
            return rgb[:, :, 0]
        if what == "binary":
            # any colour marks foreground: the brightest channel, so a pure red (255, 0, 0) lesion
            # stays foreground (a channel mean or luma would put it below the cut)
            return rgb.max(axis=2)
        raise DataFileError(
            f"{file_name} is an RGB mask with differing channels, but {what} masks must be single-channel "
            "(class ids per pixel). Convert it, or declare mask_encoding 'gray_values' with a value->class map."
        )
    raise DataFileError(f"{file_name}: unexpected mask shape {arr.shape}")


# A binary mask whose largest value is 2..15 is a label map, not a 0/255 or soft grey mask: with the
# 127 cut it would read as all background. JPEG masks are exempt (compression noise of an empty mask).
_LABEL_MAP_MAX = 15


def decode_binary(arr: np.ndarray, file_name: str = "<array>", threshold: float = 127) -> np.ndarray:
    """Foreground of a binary mask as a bool ``H×W`` array.

    ``arr``: ``H×W`` or ``H×W×C`` as stored. 0/1 masks: ``value > 0``; otherwise ``value > threshold``
    (0/255, soft grey maps 0..255, JPEG grey levels). Colour masks use their brightest channel.
    Raises :class:`DataFileError` naming the file and the values for a small label map.
    """
    arr = to_single_channel(arr, file_name, "binary")
    if not arr.size:
        return arr > 0
    top = arr.max()
    if top <= 1:
        return arr > 0
    if top <= _LABEL_MAP_MAX and not file_name.lower().endswith((".jpg", ".jpeg")):
        values = [int(v) if float(v).is_integer() else float(v) for v in np.unique(arr)[:20]]
        raise DataFileError(
            f"{file_name}: binary mask holds values {values}, which is neither 0/1, 0/255 nor a soft grey "
            f"map (0..255); it looks like a label map. Save foreground as 1 or 255."
        )
    return arr > threshold


def read_binary_mask(file_name: str, threshold: float = 127) -> np.ndarray:
    """Read and decode a binary mask file (:func:`decode_binary`) as a bool ``H×W`` array."""
    return decode_binary(read_mask_array(file_name), file_name, threshold)


def label_map_from_binary(fg: np.ndarray, background_is_class: bool) -> np.ndarray:
    """Label map of a binary dataset: lesion = class 0 and background = 1 (no class), or,
    when background is a class, background = 0 and lesion = 1."""
    if background_is_class:
        return fg.astype(np.int64)
    return np.where(fg, 0, 1).astype(np.int64)


def read_sem_seg(file_name: str, metadata) -> np.ndarray:
    """Decode a semantic mask file into a label map (int64 ``H×W``) following ``metadata``
    (dataset metadata or a :class:`~skinformer.structures.LabelSpace`: ``classes``, ``ignore_label``,
    ``mask_encoding``, plus ``gray_values`` for "gray_values" and ``mat_key`` for "mat")."""
    from skinformer.structures.label_space import LabelSpace

    space = LabelSpace.from_metadata(metadata)
    encoding = space.mask_encoding
    num_classes, ignore, has_bg = space.num_classes, space.ignore_label, space.background_is_class
    if encoding == "binary":
        return label_map_from_binary(decode_binary(read_mask_array(file_name), file_name), has_bg)
    if encoding == "index":
        arr = to_single_channel(read_mask_array(file_name), file_name, "index").astype(np.int64)
        _check_index_values(arr, num_classes, ignore, has_bg, file_name)
        return arr
    if encoding == "gray_values":
        return _decode_gray_values(file_name, space.gray_values)
    if encoding == "mat":
        arr = _read_mat(file_name, space.mat_key)
        _check_index_values(arr, num_classes, ignore, has_bg, file_name)
        return arr
    raise DataFileError(f"Unknown mask_encoding '{encoding}' for {file_name}; expected one of {MASK_ENCODINGS}")


def _check_index_values(arr, num_classes, ignore, has_bg, file_name):
    values = np.unique(arr)
    allowed_max = num_classes - 1 if has_bg else num_classes  # K = background when it is no class
    bad = [int(v) for v in values if (v < 0 or v > allowed_max) and v != ignore]
    if bad:
        hint = ""
        if num_classes in bad:
            hint = (f" A label equal to NUM_CLASSES ({num_classes}) would silently become 'no object'"
                    " in mask-classification models.")
        if set(int(v) for v in values) <= {0, 255} and 255 != ignore:
            hint += " The mask looks like a 0/255 binary mask: declare mask_encoding 'binary'."
        raise DataFileError(
            f"{file_name}: label values {bad} are outside the {num_classes} classes "
            f"(allowed 0..{allowed_max} and ignore {ignore}).{hint}"
        )


def _decode_gray_values(file_name: str, gray_values: Optional[Dict[int, int]]) -> np.ndarray:
    if not gray_values:
        raise DataFileError(f"{file_name}: mask_encoding 'gray_values' needs metadata.gray_values")
    if not os.path.isfile(file_name):
        raise DataFileError(f"Mask file not found: {file_name}")
    try:
        with Image.open(file_name) as img:
            gray = np.asarray(img.convert("L"))
    except (OSError, SyntaxError, ValueError) as e:
        raise DataFileError(f"Cannot read mask {file_name}: {e}") from e
    lut = np.full(256, -1, dtype=np.int64)
    for g, c in gray_values.items():
        lut[int(g)] = int(c)
    out = lut[gray]
    if (out < 0).any():
        unknown = sorted(set(int(v) for v in np.unique(gray[out < 0])))
        raise DataFileError(
            f"{file_name}: unknown gray values {unknown[:10]} (known: {sorted(int(g) for g in gray_values)}); "
            "masks must be crisp, without anti-aliasing"
        )
    return out


def _read_mat(file_name: str, key: str) -> np.ndarray:
    from scipy.io import loadmat

    if not os.path.isfile(file_name):
        raise DataFileError(f"Mask file not found: {file_name}")
    try:
        data = loadmat(file_name)
    except (OSError, ValueError, TypeError) as e:
        raise DataFileError(f"Cannot read MATLAB file {file_name}: {e}") from e
    if key not in data:
        keys = [k for k in data if not k.startswith("__")]
        raise DataFileError(f"{file_name}: no variable '{key}' (found {keys})")
    return np.asarray(data[key]).astype(np.int64)


# Truncated images must fail loudly rather than be silently padded.
ImageFile.LOAD_TRUNCATED_IMAGES = False
