"""Format loaders shared by the built-in families (like detectron2's ``datasets/coco.py``).

* :func:`load_coco_json` / :func:`register_coco_instances`: COCO instance json -> dataset dicts
  with ``annotations`` (polygons and RLE, crowd flags kept for the mapper to drop).
* :func:`load_sem_seg_pairs`: pair an image folder with a mask folder by image id.
* :func:`load_sem_seg_json`: SiMaskFormer's split lists ``{"images": [{"id", "file_name", "mask_name"}]}``.
* :func:`read_split_file`, :func:`image_hw`: split id lists and image sizes from file headers.

Every problem with a file raises :class:`~skinformer.data.mask_io.DataFileError` naming the file
(and the json / annotation id where there is one); a missing root or annotation file raises the
``require_path`` error (``SKINFORMER_DATASETS``, the path, the layout in ``datasets/README.md``).
"""
import json
import logging
import os
import re
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from PIL import Image

from skinformer.data.catalog import DatasetCatalog, MetadataCatalog
from skinformer.data.mask_io import DataFileError

from .utils import require_path

__all__ = [
    "BBOX_MODE_XYWH_ABS", "load_coco_json", "register_coco_instances", "load_sem_seg_pairs",
    "load_sem_seg_json", "read_split_file", "image_hw", "check_same_hw", "IMAGE_EXTENSIONS",
]

logger = logging.getLogger(__name__)

# ``bbox_mode`` of the boxes in dataset dicts: COCO's [x0, y0, w, h] in absolute pixels.
BBOX_MODE_XYWH_ABS = "XYWH_ABS"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
_MAX_LISTED = 10  # how many offending files an error message lists


def _listing(items: Sequence[str]) -> str:
    items = list(items)
    s = "\n  ".join(items[:_MAX_LISTED])
    more = f"\n  ... and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else ""
    return f"\n  {s}{more}"


def image_hw(file_name: str) -> Tuple[int, int]:
    """``(height, width)`` of an image from its header (the pixels are not decoded)."""
    if not os.path.isfile(file_name):
        raise DataFileError(f"Image file not found: {file_name}")
    try:
        with Image.open(file_name) as img:
            w, h = img.size
    except (OSError, SyntaxError, ValueError) as e:
        raise DataFileError(f"Cannot read image {file_name}: {e}") from e
    return int(h), int(w)


def check_same_hw(image_file: str, image_hw_: Tuple[int, int], mask_file: str) -> None:
    """Raise naming both files when the mask's header size differs from the image's."""
    if mask_file.lower().endswith(".mat"):
        return  # size known only after loading; checked by the mapper / validator
    mh, mw = image_hw(mask_file)
    if (mh, mw) != tuple(image_hw_):
        ih, iw = image_hw_
        raise DataFileError(
            f"Image/mask size mismatch: image {image_file} is {iw}x{ih} (WxH) but mask {mask_file} is {mw}x{mh}"
        )


def read_split_file(path: str, dataset_name: str, layout_hint: str) -> List[str]:
    """Ids listed one per line (blank lines and ``#`` comments skipped; an image extension is
    stripped, so ``abc.jpg`` and ``abc`` both give ``abc``)."""
    require_path(path, dataset_name, layout_hint)
    ids = []
    with open(path) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            stem, ext = os.path.splitext(os.path.basename(line))
            ids.append(stem if ext.lower() in IMAGE_EXTENSIONS or ext.lower() == ".mat" else os.path.basename(line))
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise DataFileError(f"Split file {path} lists ids more than once: {dup[:_MAX_LISTED]}")
    return ids


# ---------------------------------------------------------------------------------------------
# semantic: image folder + mask folder
# ---------------------------------------------------------------------------------------------
def load_sem_seg_pairs(
    image_dir: str,
    mask_dir: str,
    *,
    dataset_name: str,
    layout_hint: str,
    image_pattern: str,
    mask_name: Callable[[str], str],
    mask_pattern: Optional[str] = None,
    ids: Optional[Iterable[str]] = None,
    check_sizes: bool = True,
) -> List[Dict]:
    """Pair images and masks by image id.

    Args:
        image_dir, mask_dir: folders (missing -> ``require_path`` error).
        image_pattern: regex with a group ``id`` that image file names must match in full
            (other files, e.g. ISIC's ``*_superpixels.png`` or LICENSE.txt, are ignored).
        mask_name: image id -> mask file name.
        mask_pattern: regex with group ``id`` matching mask names; masks whose image is absent are
            an error. Only checked when ``ids`` is None (split files share one mask folder).
        ids: restrict to these ids (a split file), in this order; a listed id without its image is an error.
        check_sizes: compare image and mask sizes from the file headers.

    Returns:
        dataset dicts ``{file_name, sem_seg_file_name, height, width, image_id}`` sorted by id
        (or in ``ids`` order).
    """
    require_path(image_dir, dataset_name, layout_hint)
    require_path(mask_dir, dataset_name, layout_hint)
    img_re = re.compile(image_pattern)
    images = {}
    for n in os.listdir(image_dir):
        m = img_re.fullmatch(n)
        if m:
            images[m.group("id")] = os.path.join(image_dir, n)

    if ids is None:
        order = sorted(images)
    else:
        order = list(ids)
        missing = [i for i in order if i not in images]
        if missing:
            raise DataFileError(
                f"Dataset '{dataset_name}': {len(missing)} ids of the split have no image in {image_dir} "
                f"(expected names matching {image_pattern!r}):{_listing(missing)}"
            )
    if not order:
        raise DataFileError(f"Dataset '{dataset_name}': no images matching {image_pattern!r} in {image_dir}. "
                            f"Expected layout: {layout_hint}")

    masks = set(os.listdir(mask_dir))
    unpaired = [i for i in order if mask_name(i) not in masks]
    if unpaired:
        raise DataFileError(
            f"Dataset '{dataset_name}': {len(unpaired)} images have no mask in {mask_dir} "
            f"(expected e.g. {mask_name(unpaired[0])}):{_listing([images[i] for i in unpaired])}"
        )
    if ids is None and mask_pattern is not None:
        mask_re = re.compile(mask_pattern)
        orphans = [os.path.join(mask_dir, n) for n in sorted(masks)
                   if (m := mask_re.fullmatch(n)) and m.group("id") not in images]
        if orphans:
            raise DataFileError(
                f"Dataset '{dataset_name}': {len(orphans)} masks have no image in {image_dir}:{_listing(orphans)}"
            )

    out = []
    for i in order:
        file_name, mask_file = images[i], os.path.join(mask_dir, mask_name(i))
        hw = image_hw(file_name)
        if check_sizes:
            check_same_hw(file_name, hw, mask_file)
        out.append({"file_name": file_name, "sem_seg_file_name": mask_file, "height": hw[0], "width": hw[1],
                    "image_id": i})
    return out


# ---------------------------------------------------------------------------------------------
# semantic: SiMaskFormer json split lists
# ---------------------------------------------------------------------------------------------
def load_sem_seg_json(json_file: str, root: str, *, dataset_name: str, layout_hint: str,
                      check_sizes: bool = True) -> List[Dict]:
    """SiMaskFormer's list ``{"images": [{"id": int, "file_name": rel, "mask_name": rel}]}`` (paths
    relative to ``root``).

    Unlike the original loader (which sorted images and masks separately and zipped them), each
    entry pairs its own image and mask, and a missing file is an error naming it and the json.
    """
    require_path(json_file, dataset_name, layout_hint)
    try:
        with open(json_file) as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise DataFileError(f"Cannot read split list {json_file}: {e}") from e
    entries = data.get("images") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise DataFileError(f"{json_file}: expected {{\"images\": [{{\"id\", \"file_name\", \"mask_name\"}}, ...]}}")
    out, missing, seen = [], [], set()
    for k, e in enumerate(entries):
        if not isinstance(e, dict) or "file_name" not in e or "mask_name" not in e:
            raise DataFileError(f"{json_file}: entry {k} needs 'file_name' and 'mask_name', got {e!r}")
        image_id = e.get("id", k)
        if image_id in seen:
            raise DataFileError(f"{json_file}: image id {image_id!r} appears more than once")
        seen.add(image_id)
        file_name, mask_file = os.path.join(root, e["file_name"]), os.path.join(root, e["mask_name"])
        missing += [p for p in (file_name, mask_file) if not os.path.isfile(p)]
        out.append({"file_name": file_name, "sem_seg_file_name": mask_file, "image_id": image_id})
    if missing:
        raise DataFileError(f"{json_file} references {len(missing)} files that do not exist:{_listing(missing)}")
    for d in out:
        d["height"], d["width"] = image_hw(d["file_name"])
        if check_sizes:
            check_same_hw(d["file_name"], (d["height"], d["width"]), d["sem_seg_file_name"])
    out.sort(key=lambda d: (isinstance(d["image_id"], str), d["image_id"]))
    return out


# ---------------------------------------------------------------------------------------------
# instances: COCO json
# ---------------------------------------------------------------------------------------------
def _valid_polygons(seg) -> List[List[float]]:
    return [list(map(float, p)) for p in seg if isinstance(p, (list, tuple)) and len(p) >= 6 and len(p) % 2 == 0]


def _rle_to_compressed(seg: Dict, h: int, w: int) -> Dict:
    from pycocotools import mask as mask_util

    if isinstance(seg.get("counts"), list):  # uncompressed RLE
        seg = mask_util.frPyObjects(seg, h, w)
    counts = seg["counts"]
    return {"size": [int(seg["size"][0]), int(seg["size"][1])],
            "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}


def load_coco_json(
    json_file: str,
    image_root: str,
    dataset_name: Optional[str] = None,
    *,
    id_map: Optional[Dict[int, int]] = None,
    layout_hint: str = "datasets/README.md",
    keep_file_names: Optional[Iterable[str]] = None,
    check_sizes: bool = True,
) -> List[Dict]:
    """Load a COCO instance json into dataset dicts.

    Args:
        json_file: the annotation file (missing -> ``require_path`` error).
        image_root: folder the images' ``file_name`` are relative to.
        dataset_name: used in messages and, when ``id_map`` is None, to store the classes found in
            the json in its metadata.
        id_map: COCO category id -> contiguous id (0-based). None: the json's categories sorted by id.
        keep_file_names: keep only images whose base name (with or without extension) is listed.
        check_sizes: compare each image's json size with its file header.

    Returns:
        ``[{file_name, height, width, image_id, annotations: [{bbox (XYWH_ABS), bbox_mode,
        category_id (contiguous), segmentation (polygons or compressed RLE), iscrowd, id}]}]``.
        Annotations with empty polygons are dropped (the count is logged). Unknown category ids,
        annotations of unknown images, RLE of the wrong size and images that do not exist are errors
        naming the json and the offending annotation / file.
    """
    name = dataset_name or json_file
    require_path(json_file, name, layout_hint)
    try:
        with open(json_file) as f:
            coco = json.load(f)
    except (OSError, ValueError) as e:
        raise DataFileError(f"Cannot read COCO json {json_file}: {e}") from e
    for key in ("images", "annotations"):
        if not isinstance(coco.get(key), list):
            raise DataFileError(f"{json_file}: not a COCO instance file (no '{key}' list)")
    cats = sorted(coco.get("categories", []), key=lambda c: c["id"])
    if id_map is None:
        if not cats:
            raise DataFileError(f"{json_file}: no 'categories' and no id map given")
        id_map = {int(c["id"]): k for k, c in enumerate(cats)}
        if dataset_name is not None:
            MetadataCatalog.get(dataset_name).set(classes=[c["name"] for c in cats],
                                                  thing_dataset_id_to_contiguous_id=id_map)

    keep = None
    if keep_file_names is not None:
        keep = set()
        for n in keep_file_names:
            keep.add(os.path.basename(n))
            keep.add(os.path.splitext(os.path.basename(n))[0])

    images, missing = {}, []
    for img in coco["images"]:
        base = os.path.basename(img["file_name"])
        if keep is not None and base not in keep and os.path.splitext(base)[0] not in keep:
            continue
        if img["id"] in images:
            raise DataFileError(f"{json_file}: image id {img['id']} appears more than once")
        file_name = os.path.join(image_root, img["file_name"])
        if not os.path.isfile(file_name):
            missing.append(file_name)
        images[img["id"]] = {"file_name": file_name, "height": int(img["height"]), "width": int(img["width"]),
                             "image_id": img["id"], "annotations": []}
    if missing:
        raise DataFileError(f"{json_file} references {len(missing)} images that do not exist:{_listing(missing)}")
    if keep is not None:
        found = {os.path.basename(d["file_name"]) for d in images.values()}
        found |= {os.path.splitext(n)[0] for n in found}
        absent = sorted(n for n in keep_file_names if os.path.basename(n) not in found
                        and os.path.splitext(os.path.basename(n))[0] not in found)
        if absent:
            raise DataFileError(
                f"{json_file} has no image entry for {len(absent)} files of the split:{_listing(absent)}"
            )

    all_image_ids = {img["id"] for img in coco["images"]}
    num_empty = 0
    for ann in coco["annotations"]:
        ann_id = ann.get("id")
        if ann["image_id"] not in all_image_ids:
            raise DataFileError(f"{json_file}: annotation {ann_id} refers to image id {ann['image_id']}, "
                                "which is not in 'images'")
        rec = images.get(ann["image_id"])
        if rec is None:  # image filtered out by keep_file_names
            continue
        cid = ann.get("category_id")
        if cid not in id_map:
            raise DataFileError(
                f"{json_file}: annotation {ann_id} (image {rec['file_name']}) has unknown category_id {cid}; "
                f"known ids: {sorted(id_map)}"
            )
        seg = ann.get("segmentation")
        h, w = rec["height"], rec["width"]
        if isinstance(seg, dict):
            if "counts" not in seg or "size" not in seg:
                raise DataFileError(f"{json_file}: annotation {ann_id} has an RLE without 'counts'/'size'")
            if [int(s) for s in seg["size"]] != [h, w]:
                raise DataFileError(
                    f"{json_file}: annotation {ann_id} RLE size {seg['size']} differs from image "
                    f"{rec['file_name']} size {[h, w]} (H, W)"
                )
            seg = _rle_to_compressed(seg, h, w)
        else:
            seg = _valid_polygons(seg or [])
            if not seg:
                num_empty += 1
                continue
        bbox = ann.get("bbox")
        if bbox is None or len(bbox) != 4:
            from pycocotools import mask as mask_util

            rle = seg if isinstance(seg, dict) else mask_util.merge(mask_util.frPyObjects(seg, h, w))
            bbox = mask_util.toBbox(rle).tolist()
        rec["annotations"].append({
            "id": ann_id, "bbox": [float(b) for b in bbox], "bbox_mode": BBOX_MODE_XYWH_ABS,
            "category_id": id_map[cid], "segmentation": seg, "iscrowd": int(ann.get("iscrowd", 0)),
        })
    if num_empty:
        logger.warning(f"{json_file}: dropped {num_empty} annotations with empty or invalid polygons "
                       "(fewer than 3 points)")
    out = sorted(images.values(), key=lambda d: (isinstance(d["image_id"], str), d["image_id"]))
    if check_sizes:
        for d in out:
            hw = image_hw(d["file_name"])
            if hw != (d["height"], d["width"]):
                raise DataFileError(
                    f"{json_file}: image {d['file_name']} is {hw[1]}x{hw[0]} (WxH) but the json says "
                    f"{d['width']}x{d['height']}"
                )
    return out


def register_coco_instances(name: str, metadata: Dict, json_file: str, image_root: str, **kwargs) -> None:
    """Register a COCO instance dataset; ``metadata`` may hold ``thing_dataset_id_to_contiguous_id``."""
    id_map = metadata.get("thing_dataset_id_to_contiguous_id")
    DatasetCatalog.register(
        name, lambda: load_coco_json(json_file, image_root, name, id_map=id_map, **kwargs)
    )
    MetadataCatalog.get(name).set(json_file=json_file, image_root=image_root, **metadata)
