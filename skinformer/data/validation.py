"""Dataset validation: read every image and mask of a dataset the way training will, and report
problems per file.

Errors (the dataset cannot be used as declared): unreadable or missing image/mask, image/mask size
mismatch, declared ``height``/``width`` different from the image, label values outside the classes
(incl. a label equal to ``NUM_CLASSES`` where that is not the background id), RGB masks where
single-channel index masks are expected, unknown grey values, category ids outside the classes.

Notes (accepted, reported for information): 0/255 binary masks (mapped to 0/1), JPEG-like binary
masks with intermediate grey levels (thresholded at 128), empty masks (counted).
"""
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from skinformer.structures.label_space import LabelSpace

from .mask_io import DataFileError, read_image, read_mask_array, read_sem_seg

__all__ = ["ValidationReport", "validate_dataset_dicts", "validate_dataset", "validate_first_images"]

logger = logging.getLogger(__name__)

# error categories, in report order
ERROR_KINDS = {
    "missing_key": "dataset dict lacks a required key",
    "unreadable_image": "image missing or unreadable",
    "unreadable_mask": "mask missing or unreadable",
    "size_mismatch": "image and mask sizes differ",
    "declared_size": "declared height/width differ from the image",
    "label_values": "label values outside the classes",
    "rgb_mask": "RGB mask where a single-channel index mask is expected",
    "gray_values": "unknown grey values",
    "category_id": "annotation category id outside the classes",
    "metadata": "metadata inconsistent with the config",
}
NOTE_KINDS = {
    "binary_0_255": "0/255 binary masks (accepted, 255 -> foreground)",
    "binary_grey_levels": "binary masks with intermediate grey levels (JPEG-like; thresholded at 128)",
    "binary_rgb": "binary masks stored as colour images (brightest channel thresholded at 128)",
    "empty_mask": "masks without any class pixel (fine, counted)",
}


@dataclass
class ValidationReport:
    """Problems found in a dataset. ``errors[kind]`` / ``notes[kind]`` = list of (file, message)."""

    name: str
    num_checked: int = 0
    errors: Dict[str, List[Tuple[str, str]]] = field(default_factory=lambda: defaultdict(list))
    notes: Dict[str, List[Tuple[str, str]]] = field(default_factory=lambda: defaultdict(list))

    @property
    def num_errors(self) -> int:
        """Total number of errors over all kinds."""
        return sum(len(v) for v in self.errors.values())

    @property
    def ok(self) -> bool:
        """True if no error was recorded."""
        return self.num_errors == 0

    def error(self, kind: str, file: str, msg: str) -> None:
        """Record an error of ``kind`` for ``file``."""
        self.errors[kind].append((file, msg))

    def note(self, kind: str, file: str, msg: str = "") -> None:
        """Record a (non-fatal) note of ``kind`` for ``file``."""
        self.notes[kind].append((file, msg))

    def format(self, max_per_kind: int = 10) -> str:
        """Human-readable summary: counts per error kind with up to ``max_per_kind`` examples each,
        then one line per note kind."""
        lines = [f"Dataset '{self.name}': {self.num_checked} samples checked, {self.num_errors} error(s)."]
        for kind, desc in ERROR_KINDS.items():
            items = self.errors.get(kind, [])
            if not items:
                continue
            lines.append(f"  ERROR {kind} ({desc}): {len(items)}")
            for file, msg in items[:max_per_kind]:
                lines.append(f"    - {file}: {msg}")
            if len(items) > max_per_kind:
                lines.append(f"    ... {len(items) - max_per_kind} more")
        for kind, desc in NOTE_KINDS.items():
            items = self.notes.get(kind, [])
            if items:
                lines.append(f"  note {kind}: {len(items)} {desc}; e.g. {items[0][0]}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()


def _binary_notes(report: ValidationReport, raw: np.ndarray, file: str) -> None:
    if raw.ndim == 3:
        rgb = raw[:, :, :3]
        if not ((rgb[:, :, 0] == rgb[:, :, 1]).all() and (rgb[:, :, 1] == rgb[:, :, 2]).all()):
            report.note("binary_rgb", file)
            return
        raw = rgb[:, :, 0]
    values = np.unique(raw)
    if values.size and values.max() > 1:
        if set(values.tolist()) <= {0, 255}:
            report.note("binary_0_255", file)
        else:
            report.note("binary_grey_levels", file, f"{len(values)} distinct values")


def _check_sem_seg(report: ValidationReport, d: Mapping, image: Optional[np.ndarray], meta: Mapping) -> None:
    mask_file = d["sem_seg_file_name"]
    space = LabelSpace.from_metadata(meta)
    enc = space.mask_encoding
    raw = None
    if enc in ("binary", "index"):
        try:
            raw = read_mask_array(mask_file)
        except DataFileError as e:
            report.error("unreadable_mask", mask_file, str(e))
            return
    try:
        labels = read_sem_seg(mask_file, meta)
    except DataFileError as e:
        msg = str(e)
        if raw is not None and raw.ndim == 3 and "RGB mask" in msg:
            report.error("rgb_mask", mask_file, msg)
        elif "label values" in msg:
            report.error("label_values", mask_file, msg)
        elif "gray values" in msg:
            report.error("gray_values", mask_file, msg)
        else:
            report.error("unreadable_mask", mask_file, msg)
        return
    if enc == "binary" and raw is not None:
        _binary_notes(report, raw, mask_file)
    if image is not None and labels.shape[:2] != image.shape[:2]:
        report.error("size_mismatch", mask_file,
                     f"mask is {labels.shape[1]}x{labels.shape[0]} (WxH) but image {d['file_name']} is "
                     f"{image.shape[1]}x{image.shape[0]}")
    k = space.num_classes
    if not ((labels >= 0) & (labels < k) & (labels != space.background_label)).any():
        report.note("empty_mask", mask_file)


def _check_label_files(report: ValidationReport, d: Mapping, image: Optional[np.ndarray], meta: Mapping) -> None:
    from .mask_io import decode_binary

    files = d["label_file_names"]
    k = len(meta["classes"])
    if len(files) != k:
        report.error("missing_key", d["file_name"], f"{len(files)} label_file_names for {k} classes")
    any_fg = False
    for f in files:
        if f is None:  # attribute absent for this image
            continue
        try:
            raw = read_mask_array(f)
            fg = decode_binary(raw, f)
        except DataFileError as e:
            report.error("unreadable_mask", f, str(e))
            continue
        _binary_notes(report, raw, f)
        any_fg |= bool(fg.any())
        if image is not None and fg.shape[:2] != image.shape[:2]:
            report.error("size_mismatch", f, f"mask is {fg.shape[1]}x{fg.shape[0]} (WxH) but image "
                                             f"{d['file_name']} is {image.shape[1]}x{image.shape[0]}")
    if not any_fg:
        report.note("empty_mask", d["file_name"])


def _check_annotations(report: ValidationReport, d: Mapping, meta: Mapping) -> None:
    k = len(meta["classes"])
    bad = sorted({a.get("category_id") for a in d["annotations"]
                  if not isinstance(a.get("category_id"), int) or not 0 <= a["category_id"] < k})
    if bad:
        report.error("category_id", d["file_name"], f"category ids {bad} outside 0..{k - 1} (contiguous ids expected)")
    if not d["annotations"]:
        report.note("empty_mask", d["file_name"])


def validate_dataset_dicts(dicts: Sequence[Mapping], metadata: Mapping, name: str = "<dicts>",
                           progress: bool = True, report: Optional[ValidationReport] = None) -> ValidationReport:
    """Check ``dicts`` against ``metadata`` (``classes``, ``mask_encoding``, ``ignore_label``, ...)."""
    from tqdm import tqdm

    if hasattr(metadata, "as_dict"):
        metadata = metadata.as_dict()
    report = report or ValidationReport(name)
    for d in tqdm(dicts, desc=f"Validating {name}", disable=not progress, leave=False):
        report.num_checked += 1
        file_name = d.get("file_name")
        if not file_name:
            report.error("missing_key", str(d.get("image_id", "?")), "no 'file_name'")
            continue
        image = None
        try:
            image = read_image(file_name)
        except DataFileError as e:
            report.error("unreadable_image", file_name, str(e))
        if image is not None and d.get("height") is not None and d.get("width") is not None:
            if (int(d["height"]), int(d["width"])) != image.shape[:2]:
                report.error("declared_size", file_name, f"dataset dict says {d['width']}x{d['height']} (WxH), "
                                                         f"file is {image.shape[1]}x{image.shape[0]}")
        if "sem_seg_file_name" in d:
            _check_sem_seg(report, d, image, metadata)
        elif "label_file_names" in d:
            _check_label_files(report, d, image, metadata)
        elif "annotations" in d:
            _check_annotations(report, d, metadata)
        else:
            report.error("missing_key", file_name, "no 'sem_seg_file_name', 'label_file_names' or 'annotations'")
    return report


def validate_dataset(name: str, max_images: Optional[int] = None, progress: bool = True) -> ValidationReport:
    """Validate (the first ``max_images`` samples of) the registered dataset ``name``."""
    from .catalog import DatasetCatalog, MetadataCatalog

    dicts = DatasetCatalog.get(name)
    if max_images is not None and max_images >= 0:
        dicts = dicts[:max_images]
    report = validate_dataset_dicts(dicts, MetadataCatalog.get(name), name=name, progress=progress)
    if len(dicts) == 0:
        report.error("missing_key", name, "the dataset is empty")
    return report


def validate_first_images(cfg, names: Optional[Iterable[str]] = None) -> List[ValidationReport]:
    """Start-up check of the first ``DATASETS.VALIDATE_FIRST_N`` samples of each training dataset
    (and that ``len(metadata.classes) == MODEL.SEM_SEG_HEAD.NUM_CLASSES``).

    Raises ``DataFileError`` listing every problem found; returns the reports otherwise.
    """
    from .catalog import MetadataCatalog

    n = int(cfg.DATASETS.VALIDATE_FIRST_N)
    names = list(cfg.DATASETS.TRAIN if names is None else names)
    reports = []
    for name in names:
        if n > 0:
            report = validate_dataset(name, max_images=n, progress=False)
        else:
            report = ValidationReport(name)
        classes = MetadataCatalog.get(name).get("classes")
        num_classes = cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES
        if classes is not None and len(classes) != num_classes:
            report.error("metadata", name, f"dataset has {len(classes)} classes {classes} but "
                                           f"MODEL.SEM_SEG_HEAD.NUM_CLASSES is {num_classes}; set it to {len(classes)}")
        reports.append(report)
    bad = [r for r in reports if not r.ok]
    if bad:
        raise DataFileError(
            "Dataset validation failed at start-up (DATASETS.VALIDATE_FIRST_N = "
            f"{n}):\n" + "\n".join(r.format() for r in bad) +
            "\nRun tools/validate_dataset.py --dataset NAME for a full report."
        )
    for r in reports:
        logger.info("Validated the first %d samples of '%s': OK", r.num_checked, r.name)
    return reports
