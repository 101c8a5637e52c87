"""PolypDB_INS (SiMaskFormer's polyp data): instances and semantic masks.

* ``polypdb_ins_{train,val,test}``: COCO json ``polypdb_ins/polypdb_ins_{split}.json`` (image
  ``file_name`` relative to ``polypdb_ins/``); categories 1 pedunculated, 2 sessile -> contiguous 0, 1;
  polygons and RLE; evaluated with the COCO instance metrics.
* ``polypdb_ins_sem_seg_{train,val,test}``: split lists ``polypdb_ins/polypdb_sem_{split}.json``
  (``{"images": [{"id", "file_name", "mask_name"}]}``); JPEG masks thresholded at 128, class ``polyp``.

Download: Google Drive file id ``1olTs9hZA4o81vfrYO32oZVuGzvTVNIQ_`` (SiMaskFormer README); the
split files are not part of it, ``datasets/prepare_polypdb.py`` writes / checks them.
"""
import os
from typing import Dict, List, Optional

from skinformer.data.catalog import DatasetCatalog, MetadataCatalog

from .coco import load_coco_json, load_sem_seg_json

__all__ = ["POLYPDB_INS_METADATA", "POLYP_SEM_SEG_METADATA", "load_polypdb_ins", "load_polypdb_sem_seg",
           "register_polypdb", "builtin_names"]

POLYPDB_INS_METADATA = dict(
    classes=["pedunculated", "sessile"], thing_dataset_id_to_contiguous_id={1: 0, 2: 1}, ignore_label=255,
    has_background_class=False, evaluator_type="coco_instance", mapper="InstanceMapper",
    palette=[[0, 255, 0], [255, 0, 0]],
)
# binary polyp segmentation (also used by Kvasir-SEG); scored like ISIC Task 1 (pooled + per-image)
POLYP_SEM_SEG_METADATA = dict(
    classes=["polyp"], ignore_label=255, has_background_class=False, evaluator_type="isic_task1",
    mapper="SemanticMapper", mask_encoding="binary", palette=[[255, 0, 0]],
)
_SPLITS = ("train", "val", "test")
_FOLDER = "polypdb_ins"


def _hint(kind: str, split: str) -> str:
    if kind == "ins":
        return (f"{_FOLDER}/polypdb_ins_{split}.json (COCO instances, file_name relative to {_FOLDER}/); "
                "see datasets/README.md 'PolypDB_INS'")
    return (f"{_FOLDER}/polypdb_sem_{split}.json ({{\"images\": [{{\"id\", \"file_name\", \"mask_name\"}}]}}, "
            f"paths relative to {_FOLDER}/); datasets/README.md section 'PolypDB_INS'")


def load_polypdb_ins(root: str, split: str, dataset_name: Optional[str] = None) -> List[Dict]:
    """Dataset dicts of PolypDB instances ``split`` from its COCO json."""
    name = dataset_name or f"polypdb_ins_{split}"
    base = os.path.join(root, _FOLDER)
    return load_coco_json(os.path.join(base, f"polypdb_ins_{split}.json"), base, name,
                          id_map=POLYPDB_INS_METADATA["thing_dataset_id_to_contiguous_id"],
                          layout_hint=_hint("ins", split))


def load_polypdb_sem_seg(root: str, split: str, dataset_name: Optional[str] = None) -> List[Dict]:
    """Dataset dicts of PolypDB semantic ``split`` from its image / mask json."""
    name = dataset_name or f"polypdb_ins_sem_seg_{split}"
    base = os.path.join(root, _FOLDER)
    return load_sem_seg_json(os.path.join(base, f"polypdb_sem_{split}.json"), base, dataset_name=name,
                             layout_hint=_hint("sem", split))


def register_polypdb(root: str) -> None:
    """Register ``polypdb_ins_<split>`` and ``polypdb_ins_sem_seg_<split>`` under ``root``."""
    base = os.path.join(root, _FOLDER)
    for split in _SPLITS:
        name = f"polypdb_ins_{split}"
        DatasetCatalog.register(name, lambda s=split, n=name: load_polypdb_ins(root, s, n))
        MetadataCatalog.get(name).set(**POLYPDB_INS_METADATA, json_file=os.path.join(base, f"polypdb_ins_{split}.json"),
                                      image_root=base)
        name = f"polypdb_ins_sem_seg_{split}"
        DatasetCatalog.register(name, lambda s=split, n=name: load_polypdb_sem_seg(root, s, n))
        MetadataCatalog.get(name).set(**POLYP_SEM_SEG_METADATA, root=base)


def builtin_names() -> List[str]:
    """Names :func:`register_polypdb` registers."""
    return [f"polypdb_ins_{s}" for s in _SPLITS] + [f"polypdb_ins_sem_seg_{s}" for s in _SPLITS]
