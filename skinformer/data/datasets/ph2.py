"""PH2 dermoscopy dataset (200 images, binary lesion masks): ``ph2_sem_seg``.

Layout under ``$SKINFORMER_DATASETS`` (the PH2 release, optionally inside its ``PH2Dataset/`` folder)::

    ph2/PH2 Dataset images/IMD002/IMD002_Dermoscopic_Image/IMD002.bmp
    ph2/PH2 Dataset images/IMD002/IMD002_lesion/IMD002_lesion.bmp

PH2 has no official split; the single name holds all images (commonly used as an external test set).
"""
import os
import re
from typing import Dict, List, Optional

from skinformer.data.catalog import DatasetCatalog, MetadataCatalog
from skinformer.data.mask_io import DataFileError

from .coco import check_same_hw, image_hw
from .isic import ISIC_TASK1_METADATA
from .utils import require_path

__all__ = ["PH2_METADATA", "load_ph2", "register_ph2", "builtin_names"]

# Same task as ISIC Task 1 (binary lesion segmentation, scored with the ISIC metrics).
PH2_METADATA = dict(ISIC_TASK1_METADATA)

_IMAGES_DIR = "PH2 Dataset images"
_CASE_RE = re.compile(r"IMD\d+")
_HINT = ("ph2/PH2 Dataset images/IMDxxx/IMDxxx_Dermoscopic_Image/IMDxxx.bmp + "
         "ph2/PH2 Dataset images/IMDxxx/IMDxxx_lesion/IMDxxx_lesion.bmp (or the same under ph2/PH2Dataset/); "
         "see datasets/README.md 'PH2'")


def _images_root(root: str, name: str) -> str:
    for cand in (os.path.join(root, "ph2", _IMAGES_DIR), os.path.join(root, "ph2", "PH2Dataset", _IMAGES_DIR)):
        if os.path.isdir(cand):
            return cand
    return require_path(os.path.join(root, "ph2", _IMAGES_DIR), name, _HINT)


def load_ph2(root: str, dataset_name: Optional[str] = None, check_sizes: bool = True) -> List[Dict]:
    """One dict per ``IMDxxx`` case folder; a case without its image or lesion mask is an error."""
    name = dataset_name or "ph2_sem_seg"
    images_root = _images_root(root, name)
    cases = sorted(n for n in os.listdir(images_root) if _CASE_RE.fullmatch(n))
    if not cases:
        raise DataFileError(f"Dataset '{name}': no IMDxxx case folders in {images_root}. Expected layout: {_HINT}")
    out, unpaired = [], []
    for c in cases:
        img = os.path.join(images_root, c, f"{c}_Dermoscopic_Image", f"{c}.bmp")
        mask = os.path.join(images_root, c, f"{c}_lesion", f"{c}_lesion.bmp")
        bad = [p for p in (img, mask) if not os.path.isfile(p)]
        if bad:
            unpaired += bad
            continue
        h, w = image_hw(img)
        if check_sizes:
            check_same_hw(img, (h, w), mask)
        out.append({"file_name": img, "sem_seg_file_name": mask, "height": h, "width": w, "image_id": c})
    if unpaired:
        shown = "\n  ".join(unpaired[:10])
        raise DataFileError(f"Dataset '{name}': {len(unpaired)} files of PH2 cases are missing (each case needs "
                            f"its image and its lesion mask):\n  {shown}")
    return out


def register_ph2(root: str) -> None:
    """Register ``ph2_sem_seg`` (all 200 PH2 images) under ``root``."""
    DatasetCatalog.register("ph2_sem_seg", lambda: load_ph2(root, "ph2_sem_seg"))
    MetadataCatalog.get("ph2_sem_seg").set(**PH2_METADATA, root=os.path.join(root, "ph2"))


def builtin_names() -> List[str]:
    """Names :func:`register_ph2` registers."""
    return ["ph2_sem_seg"]
