"""Kvasir-SEG polyps: ``kvasir_seg_{train,val,test}`` (semantic) and ``kvasir_ins_{train,val,test}`` (instances).

Layout under ``$SKINFORMER_DATASETS`` (the official zip unpacks to ``Kvasir-SEG/``; both placements work)::

    kvasir_seg/images/<id>.jpg             or  kvasir_seg/Kvasir-SEG/images/<id>.jpg
    kvasir_seg/masks/<id>.jpg              or  kvasir_seg/Kvasir-SEG/masks/<id>.jpg
    kvasir_seg/splits/{train,val,test}.txt    # one image name per line; decides the split
    kvasir_seg/annotations/instances.json     # optional COCO instances (category 1 = polyp)
    kvasir_seg/annotations/instances_derived_from_masks.json   # (used if instances.json is absent)

Masks are JPEGs with compression grey levels, thresholded at 128. Without an instance json the
instances are derived from the masks: 8-connected components of at least
:data:`MIN_INSTANCE_AREA` pixels, each stored as an exact RLE.
"""
import logging
import os
from typing import Dict, List, Optional, Tuple

import numpy as np

from skinformer.data.catalog import DatasetCatalog, MetadataCatalog
from skinformer.data.mask_io import read_binary_mask

from .coco import BBOX_MODE_XYWH_ABS, load_coco_json, load_sem_seg_pairs, read_split_file
from .polyp import POLYP_SEM_SEG_METADATA
from .utils import require_path

__all__ = [
    "KVASIR_SEG_METADATA", "KVASIR_INS_METADATA", "MIN_INSTANCE_AREA", "INSTANCE_JSON_NAMES",
    "instances_from_mask", "load_kvasir_seg", "load_kvasir_ins", "register_kvasir", "builtin_names",
]

logger = logging.getLogger(__name__)

KVASIR_SEG_METADATA = dict(POLYP_SEM_SEG_METADATA)
KVASIR_INS_METADATA = dict(
    classes=["polyp"], thing_dataset_id_to_contiguous_id={1: 0}, ignore_label=255, has_background_class=False,
    evaluator_type="coco_instance", mapper="InstanceMapper", palette=[[255, 0, 0]],
)
MIN_INSTANCE_AREA = 50
# looked up in kvasir_seg/annotations/, first found wins
INSTANCE_JSON_NAMES = ("instances.json", "instances_derived_from_masks.json")
_SPLITS = ("train", "val", "test")
_FOLDER = "kvasir_seg"
_HINT = ("kvasir_seg/images/<id>.jpg + kvasir_seg/masks/<id>.jpg (or under kvasir_seg/Kvasir-SEG/) + "
         "kvasir_seg/splits/{train,val,test}.txt; datasets/README.md section 'Kvasir-SEG'")


def _image_mask_dirs(base: str) -> Tuple[str, str]:
    for cand in (base, os.path.join(base, "Kvasir-SEG")):
        if os.path.isdir(os.path.join(cand, "images")):
            return os.path.join(cand, "images"), os.path.join(cand, "masks")
    return os.path.join(base, "images"), os.path.join(base, "masks")


def load_kvasir_seg(root: str, split: str, dataset_name: Optional[str] = None) -> List[Dict]:
    """Dataset dicts of Kvasir-SEG ``split`` (ids from ``kvasir-seg/splits/<split>.txt``; masks are
    JPEGs decoded as binary)."""
    name = dataset_name or f"kvasir_seg_{split}"
    base = os.path.join(root, _FOLDER)
    require_path(base, name, _HINT)
    ids = read_split_file(os.path.join(base, "splits", f"{split}.txt"), name, _HINT)
    img_dir, mask_dir = _image_mask_dirs(base)
    return load_sem_seg_pairs(img_dir, mask_dir, dataset_name=name, layout_hint=_HINT,
                              image_pattern=r"(?P<id>[^/]+)\.jpg", mask_name=lambda i: i + ".jpg", ids=ids)


def instances_from_mask(mask_file: str, min_area: int = MIN_INSTANCE_AREA, category_id: int = 0) -> List[Dict]:
    """Annotations (contiguous ``category_id``) of the 8-connected foreground components of a binary
    mask with at least ``min_area`` pixels; ``segmentation`` is an exact compressed RLE."""
    import cv2  # imported here: importing the builtin table must stay cheap
    from pycocotools import mask as mask_util

    fg = read_binary_mask(mask_file).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
    anns = []
    for k in range(1, n):
        x, y, w, h, area = (int(v) for v in stats[k])
        if area < min_area:
            continue
        rle = mask_util.encode(np.asfortranarray((labels == k).astype(np.uint8)))
        anns.append({"bbox": [float(x), float(y), float(w), float(h)], "bbox_mode": BBOX_MODE_XYWH_ABS,
                     "category_id": category_id, "iscrowd": 0,
                     "segmentation": {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}})
    return anns


# derived annotations per (mask file, mtime, min_area): the dataset function runs once per user of
# the name (trainer, evaluator, visualiser) and decoding 1,000 JPEG masks each time is wasteful
_DERIVED_CACHE: Dict[Tuple[str, float, int], List[Dict]] = {}


def _derived(mask_file: str, min_area: int) -> List[Dict]:
    key = (mask_file, os.path.getmtime(mask_file), min_area)
    if key not in _DERIVED_CACHE:
        _DERIVED_CACHE[key] = instances_from_mask(mask_file, min_area)
    return [dict(a) for a in _DERIVED_CACHE[key]]


def load_kvasir_ins(root: str, split: str, dataset_name: Optional[str] = None,
                    min_area: int = MIN_INSTANCE_AREA) -> List[Dict]:
    """Instances of the split's images: from the COCO json in ``annotations/`` when there is one
    (restricted to the split file's images), else derived from the masks."""
    name = dataset_name or f"kvasir_ins_{split}"
    base = os.path.join(root, _FOLDER)
    require_path(base, name, _HINT)
    ids = read_split_file(os.path.join(base, "splits", f"{split}.txt"), name, _HINT)
    img_dir, mask_dir = _image_mask_dirs(base)
    for j in INSTANCE_JSON_NAMES:
        json_file = os.path.join(base, "annotations", j)
        if os.path.isfile(json_file):
            id_map = KVASIR_INS_METADATA["thing_dataset_id_to_contiguous_id"]
            return load_coco_json(json_file, img_dir, name, id_map=id_map, layout_hint=_HINT, keep_file_names=ids)
    dicts = load_sem_seg_pairs(img_dir, mask_dir, dataset_name=name, layout_hint=_HINT,
                               image_pattern=r"(?P<id>[^/]+)\.jpg", mask_name=lambda i: i + ".jpg", ids=ids)
    logger.info(f"{name}: no instance json in {os.path.join(base, 'annotations')}; deriving instances from "
                f"{len(dicts)} masks (8-connected components, area >= {min_area} px)")
    for d in dicts:
        d["annotations"] = _derived(d.pop("sem_seg_file_name"), min_area)
    return dicts


def register_kvasir(root: str) -> None:
    """Register ``kvasir_seg_<split>`` (semantic) and ``kvasir_ins_<split>`` (instances) under ``root``."""
    base = os.path.join(root, _FOLDER)
    for split in _SPLITS:
        name = f"kvasir_seg_{split}"
        DatasetCatalog.register(name, lambda s=split, n=name: load_kvasir_seg(root, s, n))
        MetadataCatalog.get(name).set(**KVASIR_SEG_METADATA, root=base)
        name = f"kvasir_ins_{split}"
        DatasetCatalog.register(name, lambda s=split, n=name: load_kvasir_ins(root, s, n))
        MetadataCatalog.get(name).set(**KVASIR_INS_METADATA, root=base)


def builtin_names() -> List[str]:
    """Names :func:`register_kvasir` registers."""
    return [f"kvasir_seg_{s}" for s in _SPLITS] + [f"kvasir_ins_{s}" for s in _SPLITS]
