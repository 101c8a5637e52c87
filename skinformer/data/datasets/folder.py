"""Folder datasets declared in YAML files (images folder + masks folder per split).

Example (every key except ``name``, ``splits`` and ``classes`` is optional)::

    name: my_lesions            # registers my_lesions_train, my_lesions_val, ... (one per split)
    root: /data/my_lesions      # relative paths are relative to this YAML file; $VARS and ~ expand
    splits:
      train: {images: train/images, masks: train/masks}
      val:   {images: val/images, masks: val/masks}
    classes: [lesion]
    ignore_label: 255
    has_background_class: false
    mask_encoding: binary        # binary | index | gray_values | mat
    mask_suffix: "_segmentation.png"   # mask = <image stem><mask_suffix>; default ".png" (".mat" for mat)
    evaluator_type: isic_task1   # default: isic_task1 for 1 class without background, else sem_seg
    mapper: SemanticMapper
    palette: [[220, 20, 60]]     # RGB per class
    gray_values: {0: 0, 147: 1}  # gray_values encoding: grey level -> class index
    mat_key: smgt                # mat encoding: variable name
    image_extensions: [.jpg, .png]

Images and masks are paired by file stem. Unpaired files are reported with counts and examples
(a warning), and a split in which nothing pairs is an error. Registration reads only the YAML;
folders are listed when the dataset is first used.
"""
import difflib
import logging
import os
from typing import Any, Dict, List, Sequence, Union

import yaml

from skinformer.data.catalog import DatasetCatalog, MetadataCatalog
from skinformer.data.mask_io import MASK_ENCODINGS

from .utils import require_path

__all__ = ["register_folder_datasets", "load_folder_split", "parse_folder_definition", "FolderDatasetError"]

logger = logging.getLogger(__name__)

_KEYS = {
    "name", "root", "splits", "classes", "ignore_label", "has_background_class", "mask_encoding", "mask_suffix",
    "evaluator_type", "mapper", "palette", "gray_values", "mat_key", "image_extensions",
}
_REQUIRED = ("name", "splits", "classes")
_SPLIT_KEYS = {"images", "masks"}
_DEFAULT_IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
# name -> (yaml file, parsed definition) of folder datasets registered in this process
_REGISTERED: Dict[str, Any] = {}


class FolderDatasetError(ValueError):
    """A folder-dataset YAML file that is not valid; the message names the file, key and value."""


def _nearest(key: str, valid) -> str:
    close = difflib.get_close_matches(str(key), sorted(valid), n=1, cutoff=0.4)
    return f" Did you mean '{close[0]}'?" if close else f" Valid keys: {sorted(valid)}."


def _default_palette(n: int) -> List[List[int]]:
    base = [[220, 20, 60], [0, 130, 200], [60, 180, 75], [255, 225, 25], [145, 30, 180], [245, 130, 48],
            [70, 240, 240], [240, 50, 230], [210, 245, 60], [0, 128, 128]]
    return [base[i % len(base)] for i in range(n)]


def parse_folder_definition(yaml_path: str) -> Dict[str, Any]:
    """Read and check one YAML definition; returns it with defaults filled and paths absolute."""
    if not os.path.isfile(yaml_path):
        raise FileNotFoundError(f"Folder dataset definition '{yaml_path}' does not exist")
    with open(yaml_path, "r") as f:
        try:
            raw = yaml.safe_load(f)
        except yaml.YAMLError as e:
            raise FolderDatasetError(f"{yaml_path}: not valid YAML: {e}") from e
    where = f"Folder dataset definition {yaml_path}"
    if not isinstance(raw, dict):
        raise FolderDatasetError(f"{where}: expected a mapping of keys ({sorted(_KEYS)}), got {type(raw).__name__}")
    for key in raw:
        if key not in _KEYS:
            raise FolderDatasetError(f"{where}: unknown key '{key}'.{_nearest(key, _KEYS)}")
    for key in _REQUIRED:
        if key not in raw:
            raise FolderDatasetError(f"{where}: missing required key '{key}'")

    def bad(key, expected):
        return FolderDatasetError(f"{where}: key '{key}' has value {raw.get(key)!r}; expected {expected}")

    d: Dict[str, Any] = {}
    if not isinstance(raw["name"], str) or not raw["name"].strip():
        raise bad("name", "a non-empty string")
    d["name"] = raw["name"].strip()

    classes = raw["classes"]
    if (not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes)
            or len(set(classes)) != len(classes)):
        raise bad("classes", "a non-empty list of distinct class names, e.g. [lesion]")
    d["classes"] = list(classes)
    k = len(classes)

    ignore = raw.get("ignore_label", 255)
    if not isinstance(ignore, int) or isinstance(ignore, bool):
        raise bad("ignore_label", "an integer (255)")
    if 0 <= ignore <= k:
        raise bad("ignore_label", f"a value that is not a class id or the background id (0..{k}), e.g. 255")
    d["ignore_label"] = ignore

    has_bg = raw.get("has_background_class", False)
    if not isinstance(has_bg, bool):
        raise bad("has_background_class", "true or false")
    d["has_background_class"] = has_bg

    enc = raw.get("mask_encoding", "binary")
    if enc not in MASK_ENCODINGS:
        close = difflib.get_close_matches(str(enc), MASK_ENCODINGS, n=1)
        raise bad("mask_encoding", f"one of {list(MASK_ENCODINGS)}" + (f" (did you mean '{close[0]}'?)" if close else ""))
    d["mask_encoding"] = enc
    if enc == "binary" and k != (2 if has_bg else 1):
        raise bad("classes", f"{2 if has_bg else 1} class(es) for mask_encoding 'binary' with "
                             f"has_background_class={has_bg} (got {k}); use 'index' masks for more classes")

    suffix = raw.get("mask_suffix", ".mat" if enc == "mat" else ".png")
    if not isinstance(suffix, str) or not suffix:
        raise bad("mask_suffix", "a non-empty string such as '.png' or '_segmentation.png'")
    d["mask_suffix"] = suffix

    default_eval = "isic_task1" if (k == 1 and not has_bg) else "sem_seg"
    for key, default in (("evaluator_type", default_eval), ("mapper", "SemanticMapper"), ("mat_key", "smgt")):
        v = raw.get(key, default)
        if not isinstance(v, str) or not v:
            raise bad(key, "a non-empty string")
        d[key] = v

    palette = raw.get("palette", _default_palette(k))
    if (not isinstance(palette, list) or len(palette) != k
            or not all(isinstance(c, list) and len(c) == 3 and all(isinstance(x, int) and 0 <= x <= 255 for x in c)
                       for c in palette)):
        raise bad("palette", f"a list of {k} RGB triples with values 0..255")
    d["palette"] = palette

    if enc == "gray_values":
        gv = raw.get("gray_values")
        if not isinstance(gv, dict) or not gv:
            raise bad("gray_values", "a mapping grey level -> class index (or class name) for mask_encoding 'gray_values'")
        table = {}
        for g, c in gv.items():
            if not isinstance(g, int) or not 0 <= g <= 255:
                raise FolderDatasetError(f"{where}: gray_values key {g!r} must be an integer grey level 0..255")
            if isinstance(c, str):
                if c not in classes:
                    raise FolderDatasetError(f"{where}: gray_values maps {g} to unknown class '{c}' (classes: {classes})")
                c = classes.index(c)
            if not isinstance(c, int) or not (0 <= c <= k or c == ignore):
                raise FolderDatasetError(f"{where}: gray_values maps {g} to {c!r}; expected a class index 0..{k - 1}, "
                                         f"{k} (background when it is not a class) or the ignore label {ignore}")
            table[g] = c
        d["gray_values"] = table
    elif "gray_values" in raw:
        raise FolderDatasetError(f"{where}: key 'gray_values' is only used with mask_encoding 'gray_values' "
                                 f"(mask_encoding is '{enc}')")

    exts = raw.get("image_extensions", list(_DEFAULT_IMAGE_EXTS))
    if not isinstance(exts, list) or not exts or not all(isinstance(e, str) for e in exts):
        raise bad("image_extensions", "a list of extensions such as ['.jpg', '.png']")
    d["image_extensions"] = [e.lower() if e.startswith(".") else "." + e.lower() for e in exts]

    base_dir = os.path.dirname(os.path.abspath(yaml_path))
    root = raw.get("root", ".")
    if not isinstance(root, str):
        raise bad("root", "a folder path (relative paths are relative to the YAML file)")
    root = os.path.expanduser(os.path.expandvars(root))
    d["root"] = os.path.normpath(root if os.path.isabs(root) else os.path.join(base_dir, root))

    splits = raw["splits"]
    if not isinstance(splits, dict) or not splits:
        raise bad("splits", "a mapping split -> {images: <dir>, masks: <dir>}, e.g. {train: {images: ..., masks: ...}}")
    d["splits"] = {}
    for split, spec in splits.items():
        if not isinstance(split, str) or not split:
            raise FolderDatasetError(f"{where}: split name {split!r} must be a non-empty string")
        if not isinstance(spec, dict):
            raise FolderDatasetError(f"{where}: split '{split}' has value {spec!r}; expected {{images: <dir>, masks: <dir>}}")
        for key in spec:
            if key not in _SPLIT_KEYS:
                raise FolderDatasetError(f"{where}: unknown key '{key}' in split '{split}'.{_nearest(key, _SPLIT_KEYS)}")
        for key in _SPLIT_KEYS:
            if not isinstance(spec.get(key), str) or not spec.get(key):
                raise FolderDatasetError(f"{where}: split '{split}' needs '{key}: <dir>' (got {spec.get(key)!r})")
        d["splits"][split] = {
            key: os.path.normpath(os.path.join(d["root"], os.path.expanduser(os.path.expandvars(spec[key]))))
            for key in _SPLIT_KEYS
        }
    d["yaml_path"] = os.path.abspath(yaml_path)
    return d


def _examples(names: Sequence[str], n: int = 5) -> str:
    names = sorted(names)
    more = f", ... ({len(names) - n} more)" if len(names) > n else ""
    return ", ".join(names[:n]) + more


def load_folder_split(definition: Dict[str, Any], split: str) -> List[Dict]:
    """Dataset dicts of one split: pairs ``<stem><ext>`` images with ``<stem><mask_suffix>`` masks."""
    from PIL import Image

    name = f"{definition['name']}_{split}"
    spec = definition["splits"][split]
    layout = (f"images in {spec['images']}/<stem>{{{','.join(definition['image_extensions'])}}} and masks in "
              f"{spec['masks']}/<stem>{definition['mask_suffix']} (declared in {definition['yaml_path']})")
    img_dir = require_path(spec["images"], name, layout)
    mask_dir = require_path(spec["masks"], name, layout)
    suffix = definition["mask_suffix"]

    images = {}
    for f in os.listdir(img_dir):
        stem, ext = os.path.splitext(f)
        if ext.lower() in definition["image_extensions"] and os.path.isfile(os.path.join(img_dir, f)):
            if stem in images:
                raise FolderDatasetError(f"Dataset '{name}': two images with the stem '{stem}' in {img_dir} "
                                         f"({images[stem]} and {f}); pairing by stem would be ambiguous")
            images[stem] = f
    masks = {f[: -len(suffix)]: f for f in os.listdir(mask_dir)
             if f.endswith(suffix) and len(f) > len(suffix) and os.path.isfile(os.path.join(mask_dir, f))}
    paired = sorted(set(images) & set(masks))
    lonely_images = sorted(set(images) - set(masks))
    lonely_masks = sorted(set(masks) - set(images))
    if not paired:
        raise FolderDatasetError(
            f"Dataset '{name}': no image in {img_dir} has a mask '<image stem>{suffix}' in {mask_dir}. "
            f"Images found: {len(images)} ({_examples(images.values())}); files ending in '{suffix}': {len(masks)} "
            f"({_examples(masks.values())}). Check 'mask_suffix' and 'image_extensions' in {definition['yaml_path']}."
        )
    if lonely_images:
        logger.warning("Dataset '%s': %d image(s) without a mask '<stem>%s' in %s are skipped: %s", name,
                       len(lonely_images), suffix, mask_dir, _examples([images[s] for s in lonely_images]))
    if lonely_masks:
        logger.warning("Dataset '%s': %d mask(s) without an image in %s are ignored: %s", name, len(lonely_masks),
                       img_dir, _examples([masks[s] for s in lonely_masks]))
    out = []
    for stem in paired:
        file_name = os.path.join(img_dir, images[stem])
        try:
            with Image.open(file_name) as im:  # header only
                width, height = im.size
        except (OSError, SyntaxError, ValueError):
            # unreadable files are reported by the mapper/validator; the size is filled in there
            width = height = None
        out.append({"file_name": file_name, "sem_seg_file_name": os.path.join(mask_dir, masks[stem]),
                    "height": height, "width": width, "image_id": stem})
    logger.info("Dataset '%s': %d image/mask pairs from %s", name, len(out), img_dir)
    return out


def register_folder_datasets(yaml_paths: Union[str, Sequence[str]]) -> List[str]:
    """Register ``<name>_<split>`` for every split of every YAML definition; returns the names.

    Registering the same definition again (e.g. ``default_setup`` in every process) is a no-op;
    a different definition under an existing name is an error.
    """
    if isinstance(yaml_paths, str):
        yaml_paths = [yaml_paths]
    names = []
    for path in yaml_paths:
        d = parse_folder_definition(path)
        for split in d["splits"]:
            name = f"{d['name']}_{split}"
            prev = _REGISTERED.get(name)
            if prev is not None:
                if {k: v for k, v in prev.items() if k != "yaml_path"} != {k: v for k, v in d.items() if k != "yaml_path"}:
                    raise FolderDatasetError(f"Dataset '{name}' from {path} is already registered with a different "
                                             f"definition (from {prev['yaml_path']})")
                names.append(name)
                continue
            if name in DatasetCatalog.list():
                raise FolderDatasetError(f"{path}: dataset name '{name}' is already taken by another (built-in or "
                                         "registered) dataset; choose another 'name'")
            DatasetCatalog.register(name, lambda d=d, split=split: load_folder_split(d, split))
            meta = {k: d[k] for k in ("classes", "ignore_label", "has_background_class", "mask_encoding",
                                      "evaluator_type", "mapper", "palette", "mat_key")}
            if "gray_values" in d:
                meta["gray_values"] = d["gray_values"]
            MetadataCatalog.get(name).set(image_root=d["splits"][split]["images"],
                                          sem_seg_root=d["splits"][split]["masks"], definition_file=d["yaml_path"],
                                          **meta)
            _REGISTERED[name] = d
            names.append(name)
    return names
