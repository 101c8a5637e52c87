"""Skin-analysis captures (acne / hemoglobin / melanin): ``skin_{acne,hemo,mela}_{train,val,test}``.

Layout under ``$SKINFORMER_DATASETS``, written by ``tools/create_skin_dataset.py`` from the masks of
``tools/generate_skin_masks.py``::

    skin/<type>/{train,val,test}/images/<id>_org_<type>.jpg
    skin/<type>/{train,val,test}/masks/<id>_mask_<type>.png      # 0/1

Each type is its own binary task (class ``<type>``, background no class). The labels are the skin
device's detections (pseudo-labels). The original project reported pooled IoU/Dice, which the
``isic_task1`` evaluator reports too.
"""
import os
from typing import Dict, List, Optional

from skinformer.data.catalog import DatasetCatalog, MetadataCatalog

from .coco import load_sem_seg_pairs
from .utils import require_path

__all__ = ["SKIN_TYPES", "SKIN_PALETTE", "skin_metadata", "load_skin", "register_skin", "builtin_names"]

SKIN_TYPES = ("acne", "hemo", "mela")
SKIN_PALETTE = {"acne": [255, 255, 0], "hemo": [255, 0, 0], "mela": [139, 69, 19]}
_SPLITS = ("train", "val", "test")


def skin_metadata(skin_type: str) -> Dict:
    """Metadata of ``skin_<skin_type>_*`` (the one place defining it)."""
    return dict(classes=[skin_type], ignore_label=255, has_background_class=False, evaluator_type="isic_task1",
                mapper="SemanticMapper", mask_encoding="binary", palette=[list(SKIN_PALETTE[skin_type])])


def load_skin(root: str, skin_type: str, split: str, dataset_name: Optional[str] = None) -> List[Dict]:
    """Dataset dicts of ``skin/<skin_type>/<split>`` (acne, hemoglobin or melanin maps)."""
    name = dataset_name or f"skin_{skin_type}_{split}"
    base = os.path.join(root, "skin", skin_type, split)
    hint = (f"skin/{skin_type}/{split}/images/<id>_org_{skin_type}.jpg + skin/{skin_type}/{split}/masks/"
            f"<id>_mask_{skin_type}.png, written by tools/create_skin_dataset.py; datasets/README.md section 'Skin'")
    require_path(base, name, hint)
    t = skin_type
    return load_sem_seg_pairs(
        os.path.join(base, "images"), os.path.join(base, "masks"), dataset_name=name, layout_hint=hint,
        image_pattern=rf"(?P<id>.+)_org_{t}\.(jpg|jpeg|png)", mask_name=lambda i: f"{i}_mask_{t}.png",
        mask_pattern=rf"(?P<id>.+)_mask_{t}\.png",
    )


def register_skin(root: str) -> None:
    """Register ``skin_<type>_<split>`` for every skin type under ``root``."""
    for t in SKIN_TYPES:
        for split in _SPLITS:
            name = f"skin_{t}_{split}"
            DatasetCatalog.register(name, lambda t=t, s=split, n=name: load_skin(root, t, s, n))
            MetadataCatalog.get(name).set(**skin_metadata(t), root=os.path.join(root, "skin", t))


def builtin_names() -> List[str]:
    """Names :func:`register_skin` registers."""
    return [f"skin_{t}_{s}" for t in SKIN_TYPES for s in _SPLITS]
