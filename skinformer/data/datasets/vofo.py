"""Seg-VoFo (vocal folds, Cho Ray Hospital; private): ``vofo_sem_seg_{train,val,test}``.

Layout under ``$SKINFORMER_DATASETS`` (SiMaskFormer's split lists, paths relative to ``vofo/``)::

    vofo/vofo_sem_{train,val,test}.json   # {"images": [{"id", "file_name", "mask_name"}]}
    vofo/<file_name>.jpg, vofo/<mask_name>.png

Masks are colour PNGs whose 8-bit luma (PIL "L") identifies the class (:data:`VOFO_GRAY_VALUES`);
any other grey value (anti-aliasing, JPEG artefacts) is an error naming the file and the value.
Background is one of the 7 classes.
"""
import os
from typing import Dict, List, Optional

from skinformer.data.catalog import DatasetCatalog, MetadataCatalog

from .coco import load_sem_seg_json

__all__ = ["VOFO_CLASSES", "VOFO_GRAY_VALUES", "VOFO_METADATA", "load_vofo", "register_vofo", "builtin_names"]

VOFO_CLASSES = ("background", "R_Vofo", "R_Arytenoid", "Benign_Les", "Malignant_les", "L_Vofo", "L_Arytenoid")
# luma of the annotation colours -> class id
VOFO_GRAY_VALUES = {0: 0, 147: 1, 111: 2, 230: 3, 104: 4, 124: 5, 127: 6}
VOFO_METADATA = dict(
    classes=list(VOFO_CLASSES), ignore_label=255, has_background_class=True, evaluator_type="sem_seg",
    mapper="SemanticMapper", mask_encoding="gray_values", gray_values=dict(VOFO_GRAY_VALUES),
    # black, red, orange, yellow, green, blue, purple
    palette=[[0, 0, 0], [255, 0, 0], [255, 165, 0], [255, 255, 0], [0, 255, 0], [0, 0, 255], [148, 0, 211]],
)
_SPLITS = ("train", "val", "test")


def load_vofo(root: str, split: str, dataset_name: Optional[str] = None) -> List[Dict]:
    """Dataset dicts of Seg-VoFo ``split`` from ``vofo/vofo_sem_<split>.json``."""
    name = dataset_name or f"vofo_sem_seg_{split}"
    base = os.path.join(root, "vofo")
    hint = (f"vofo/vofo_sem_{split}.json listing {{\"images\": [{{\"id\", \"file_name\", \"mask_name\"}}]}} "
            "with paths relative to vofo/; datasets/README.md section 'Seg-VoFo'")
    return load_sem_seg_json(os.path.join(base, f"vofo_sem_{split}.json"), base, dataset_name=name, layout_hint=hint)


def register_vofo(root: str) -> None:
    """Register ``vofo_sem_seg_<split>`` under ``root``."""
    for split in _SPLITS:
        name = f"vofo_sem_seg_{split}"
        DatasetCatalog.register(name, lambda s=split, n=name: load_vofo(root, s, n))
        MetadataCatalog.get(name).set(**VOFO_METADATA, root=os.path.join(root, "vofo"))


def builtin_names() -> List[str]:
    """Names :func:`register_vofo` registers."""
    return [f"vofo_sem_seg_{s}" for s in _SPLITS]
