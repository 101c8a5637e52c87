"""Derive binary skin masks (acne / hemo / mela) from pairs of camera captures.

The skin-analysis device writes, per capture, the original image ``<id>_org_<type>.jpg`` and the
same image with the vendor's detections painted on it, ``<id>_<digits>_<type>.jpg``. The mask is
where the two differ:

1. read both as 8-bit colour images (same size, else the pair is reported and skipped);
2. per-pixel absolute difference, channel by channel;
3. collapse to one channel: maximum over the channels (``--reduce max``, default) or OpenCV's
   luminance (``--reduce luminance``, the original project's variant used for its example masks);
4. foreground where the collapsed difference is **strictly above** the threshold
   (defaults per type: acne 20, hemo 10, mela 22). No morphology, blur or hole filling.

The mask is written as ``<id>_mask_<type>.png`` with values 0/1 (next to the original, or under
``--output-dir``). Originals without a marked twin, marked images without an original, originals
with several candidate twins and unreadable / mismatched pairs are reported in a summary.
The labels are pseudo-labels of the vendor's detector, not expert annotations.

Command line: ``tools/generate_skin_masks.py`` (:mod:`skinformer.cli.generate_skin_masks`).
"""
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import cv2
import numpy as np

# Thresholds of the original project's README (its docstring's "hemo 7" is stale).
DEFAULT_THRESHOLDS: Dict[str, int] = {"acne": 20, "hemo": 10, "mela": 22}
REDUCTIONS = ("max", "luminance")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")

# <id>_org_<type>.<ext>; the id may itself contain underscores
_ORG_RE = re.compile(r"^(?P<id>.+)_org_(?P<type>[A-Za-z0-9]+)(?P<ext>\.[A-Za-z]+)$")
# <id>_<digits>_<type>.<ext>
_MARKED_RE = re.compile(r"^(?P<id>.+)_(?P<num>\d+)_(?P<type>[A-Za-z0-9]+)(?P<ext>\.[A-Za-z]+)$")
_MASK_RE = re.compile(r"^.+_mask_[A-Za-z0-9]+\.png$")


@dataclass
class PairingReport:
    """Result of pairing originals with their marked twins (all paths absolute)."""

    pairs: List[tuple] = field(default_factory=list)  # (original, marked, skin_type, image_id)
    unpaired_originals: List[str] = field(default_factory=list)
    unpaired_marked: List[str] = field(default_factory=list)
    ambiguous: Dict[str, List[str]] = field(default_factory=dict)  # original -> candidates


@dataclass
class GenerationReport(PairingReport):
    """:class:`PairingReport` plus what mask generation did: files written, failures (original ->
    reason) and masks kept because they existed."""
    written: List[str] = field(default_factory=list)
    failed: Dict[str, str] = field(default_factory=dict)  # original -> reason (unreadable, size)
    skipped_existing: List[str] = field(default_factory=list)

    @property
    def num_problems(self) -> int:
        """Total of unpaired originals, unpaired marked images, ambiguous and failed samples."""
        return (len(self.unpaired_originals) + len(self.unpaired_marked) + len(self.ambiguous)
                + len(self.failed))


def mask_file_name(image_id: str, skin_type: str) -> str:
    """``<id>_mask_<type>.png``, the mask file written for a capture."""
    return f"{image_id}_mask_{skin_type}.png"


def pair_files(dataset_dir: str, skin_type: Optional[str] = None) -> PairingReport:
    """Pair every ``<id>_org_<type>`` file with its ``<id>_<digits>_<type>`` twin.

    Args:
        dataset_dir: folder holding the raw captures (not searched recursively).
        skin_type: only consider files of this type; ``None`` = every type found.
    """
    names = sorted(os.listdir(dataset_dir))
    names = [n for n in names if os.path.splitext(n)[1].lower() in IMAGE_EXTENSIONS and not _MASK_RE.match(n)]
    originals, marked_by_key = [], defaultdict(list)
    for n in names:
        m = _ORG_RE.match(n)
        if m:
            if skin_type is None or m.group("type") == skin_type:
                originals.append((n, m))
            continue
        m = _MARKED_RE.match(n)
        if m and (skin_type is None or m.group("type") == skin_type):
            marked_by_key[(m.group("id"), m.group("type"), m.group("ext").lower())].append(n)

    report = PairingReport()
    claimed = set()
    for n, m in originals:
        key = (m.group("id"), m.group("type"), m.group("ext").lower())
        cands = marked_by_key.get(key, [])
        path = os.path.join(dataset_dir, n)
        if len(cands) == 1:
            report.pairs.append((path, os.path.join(dataset_dir, cands[0]), m.group("type"), m.group("id")))
        elif not cands:
            report.unpaired_originals.append(path)
        else:
            report.ambiguous[path] = [os.path.join(dataset_dir, c) for c in cands]
        claimed.update(cands)
    for cands in marked_by_key.values():
        report.unpaired_marked.extend(os.path.join(dataset_dir, c) for c in cands if c not in claimed)
    report.unpaired_marked.sort()
    return report


def compute_mask(original: np.ndarray, marked: np.ndarray, threshold: float, reduce: str = "max") -> np.ndarray:
    """0/1 uint8 ``H×W`` mask where the marked image differs from the original.

    Args:
        original, marked: ``H×W×3`` uint8 BGR images of the same size.
        threshold: a pixel is foreground when the collapsed difference is strictly greater.
        reduce: "max" (maximum over channels) or "luminance" (OpenCV BGR→gray weights).
    """
    if original.shape != marked.shape:
        raise ValueError(f"image shapes differ: {original.shape} vs {marked.shape}")
    diff = cv2.absdiff(original, marked)
    if diff.ndim == 2:
        collapsed = diff
    elif reduce == "max":
        collapsed = diff.max(axis=2)
    elif reduce == "luminance":
        collapsed = cv2.cvtColor(diff, cv2.COLOR_BGR2GRAY)
    else:
        raise ValueError(f"unknown reduce '{reduce}'; expected one of {REDUCTIONS}")
    return (collapsed > threshold).astype(np.uint8)


def _read_bgr(path: str) -> Optional[np.ndarray]:
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    return img


def generate_masks(dataset_dir: str, skin_type: Optional[str] = None, threshold: Optional[float] = None,
                   reduce: str = "max", output_dir: Optional[str] = None, overwrite: bool = True,
                   progress: bool = True) -> GenerationReport:
    """Write ``<id>_mask_<type>.png`` for every pair in ``dataset_dir``; see the module docstring.

    ``threshold=None`` uses :data:`DEFAULT_THRESHOLDS` of each file's type.
    """
    if reduce not in REDUCTIONS:
        raise ValueError(f"unknown reduce '{reduce}'; expected one of {REDUCTIONS}")
    if not os.path.isdir(dataset_dir):
        raise FileNotFoundError(f"--dataset-dir {dataset_dir} is not a folder")
    pairing = pair_files(dataset_dir, skin_type)
    report = GenerationReport(**vars(pairing))
    output_dir = output_dir or dataset_dir
    os.makedirs(output_dir, exist_ok=True)

    pairs = pairing.pairs
    if progress:
        from tqdm import tqdm

        pairs = tqdm(pairs, desc="masks", unit="pair")
    for org_path, marked_path, typ, image_id in pairs:
        out = os.path.join(output_dir, mask_file_name(image_id, typ))
        if not overwrite and os.path.exists(out):
            report.skipped_existing.append(out)
            continue
        t = threshold if threshold is not None else DEFAULT_THRESHOLDS.get(typ)
        if t is None:
            report.failed[org_path] = (f"no default threshold for type '{typ}' "
                                       f"(known: {sorted(DEFAULT_THRESHOLDS)}); pass --threshold")
            continue
        org, marked = _read_bgr(org_path), _read_bgr(marked_path)
        if org is None or marked is None:
            bad = org_path if org is None else marked_path
            report.failed[org_path] = f"cannot read {bad}"
            continue
        if org.shape != marked.shape:
            report.failed[org_path] = f"size {org.shape[:2]} differs from {marked_path} {marked.shape[:2]}"
            continue
        mask = compute_mask(org, marked, t, reduce)
        if not cv2.imwrite(out, mask):
            report.failed[org_path] = f"cannot write {out}"
            continue
        report.written.append(out)
    return report


def format_summary(report: GenerationReport, limit: int = 20) -> str:
    """Human-readable summary of ``report``: counts, then up to ``limit`` names per problem kind."""
    lines = [
        f"pairs found: {len(report.pairs)}; masks written: {len(report.written)}; "
        f"kept existing: {len(report.skipped_existing)}",
    ]

    def section(title: str, items: Sequence[str]):
        if items:
            lines.append(f"{title}: {len(items)}")
            lines.extend(f"  {x}" for x in list(items)[:limit])
            if len(items) > limit:
                lines.append(f"  ... and {len(items) - limit} more")

    section("originals without a marked twin (<id>_<digits>_<type>)", report.unpaired_originals)
    section("marked images without an original (<id>_org_<type>)", report.unpaired_marked)
    section("originals with several marked candidates (skipped)",
            [f"{k} -> {', '.join(os.path.basename(c) for c in v)}" for k, v in report.ambiguous.items()])
    section("pairs that failed", [f"{k}: {v}" for k, v in report.failed.items()])
    return "\n".join(lines)
