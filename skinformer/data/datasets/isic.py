"""ISIC challenge datasets (layouts in ``datasets/README.md``, section "Built-in datasets").

* Task 1 lesion segmentation, binary (class ``lesion``; background is no class):
  ``isic_sem_seg_{train,val,test}`` (ISIC 2018, SiMaskFormer's names), ``isic2017_sem_seg_{train,val,test}``,
  ``isic2016_sem_seg_{train,test}``. Each year accepts its official folders, or a simple layout
  ``images/``, ``masks/``, ``splits/{split}.txt`` (the layout of the shared ISIC 2017 copy);
  ISIC 2018 also accepts SiMaskFormer's split lists ``isic2018_sem_{split}.json``.
* ISIC 2018 Task 2 attributes ``isic2018_task2_{train,val,test}``: five overlapping binary masks per
  image, dicts carry ``label_file_names`` in :data:`ISIC2018_TASK2_ATTRIBUTES` order.
* ISIC 2017 Task 1 scored at the original resolution (``datasets/README.md``, "ISIC 2017 at the
  original resolution"): ``isic2017_sem_seg_val_fullres`` (the fixed-size copies in ``images/`` with
  the official masks ``masks_original/`` as ground truth; predictions are resized to the mask size
  by the evaluator) and ``isic2017_fullres_sem_seg_val`` (original images and masks in
  ``isic2017_fullres/``).
* ISIC 2017 Part 2 with MATLAB index maps (the U-Net + ASPP original project's variant):
  ``isic2017_part2_mat_{train,val,test}``, 7 classes including background.

Folders under ``$SKINFORMER_DATASETS``: ``isic2018/``, ``isic2017/``, ``isic2016/``, ``isic2017_part2/``,
``isic2017_fullres/``.
"""
import os
from typing import Dict, List, Optional, Tuple

from skinformer.data.catalog import DatasetCatalog, MetadataCatalog
from skinformer.data.mask_io import DataFileError

from .coco import check_same_hw, image_hw, load_sem_seg_json, load_sem_seg_pairs, read_split_file
from .utils import require_path

__all__ = [
    "ISIC_TASK1_METADATA", "ISIC2018_TASK2_ATTRIBUTES", "ISIC2018_TASK2_METADATA", "ISIC2017_PART2_CLASSES",
    "ISIC2017_PART2_METADATA", "ISIC_TASK1_YEARS", "load_isic_task1", "load_isic2018_task2",
    "load_isic2017_part2_mat", "load_isic2017_val_fullres", "load_isic2017_fullres", "register_isic_task1",
    "register_isic2017_fullres", "register_isic2018_task2", "register_isic2017_part2_mat",
    "register_all_isic", "builtin_names",
]

# ---------------------------------------------------------------------------------------------
# metadata: the only place that defines it for the ISIC families
# ---------------------------------------------------------------------------------------------
ISIC_TASK1_METADATA = dict(
    classes=["lesion"], ignore_label=255, has_background_class=False, evaluator_type="isic_task1",
    mapper="SemanticMapper", mask_encoding="binary", palette=[[255, 0, 0]],
)

# Fixed (alphabetical) order of the attribute channels: label_file_names[k] is classes[k].
ISIC2018_TASK2_ATTRIBUTES = ("globules", "milia_like_cyst", "negative_network", "pigment_network", "streaks")
ISIC2018_TASK2_METADATA = dict(
    classes=list(ISIC2018_TASK2_ATTRIBUTES), ignore_label=255, has_background_class=False,
    evaluator_type="isic_task2", mapper="MultiLabelMapper", mask_encoding="binary",
    palette=[[255, 255, 0], [0, 255, 255], [255, 0, 255], [255, 0, 0], [0, 255, 0]],
)

# smgt labels 0..6 of the original project's .mat files
ISIC2017_PART2_CLASSES = ("background", "others", "cysts", "negative_network", "pigment_network", "streaks",
                          "globules")
ISIC2017_PART2_METADATA = dict(
    classes=list(ISIC2017_PART2_CLASSES), ignore_label=255, has_background_class=True, evaluator_type="sem_seg",
    mapper="SemanticMapper", mask_encoding="mat", mat_key="smgt",
    palette=[[0, 0, 0], [128, 128, 128], [255, 255, 0], [255, 0, 255], [255, 0, 0], [0, 255, 0], [0, 255, 255]],
)

# ---------------------------------------------------------------------------------------------
# Task 1 layouts
# ---------------------------------------------------------------------------------------------
_ISIC_ID = r"(?P<id>ISIC_\d+)"

# year -> (folder under the root, registered name prefix, {split: (image folder, gt folder)}, mask suffix)
ISIC_TASK1_YEARS: Dict[str, Tuple[str, str, Dict[str, Tuple[str, str]], str]] = {
    "2018": ("isic2018", "isic_sem_seg", {
        "train": ("ISIC2018_Task1-2_Training_Input", "ISIC2018_Task1_Training_GroundTruth"),
        "val": ("ISIC2018_Task1-2_Validation_Input", "ISIC2018_Task1_Validation_GroundTruth"),
        "test": ("ISIC2018_Task1-2_Test_Input", "ISIC2018_Task1_Test_GroundTruth"),
    }, "_segmentation.png"),
    "2017": ("isic2017", "isic2017_sem_seg", {
        "train": ("ISIC-2017_Training_Data", "ISIC-2017_Training_Part1_GroundTruth"),
        "val": ("ISIC-2017_Validation_Data", "ISIC-2017_Validation_Part1_GroundTruth"),
        "test": ("ISIC-2017_Test_v2_Data", "ISIC-2017_Test_v2_Part1_GroundTruth"),
    }, "_segmentation.png"),
    "2016": ("isic2016", "isic2016_sem_seg", {
        "train": ("ISBI2016_ISIC_Part1_Training_Data", "ISBI2016_ISIC_Part1_Training_GroundTruth"),
        "test": ("ISBI2016_ISIC_Part1_Test_Data", "ISBI2016_ISIC_Part1_Test_GroundTruth"),
    }, "_Segmentation.png"),
}
_SIMPLE_MASK_SUFFIX = "_segmentation.png"


def _task1_hint(year: str, split: str) -> str:
    folder, _, splits, suffix = ISIC_TASK1_YEARS[year]
    img, gt = splits[split]
    alt = f" or the JSON list {folder}/isic2018_sem_{split}.json" if year == "2018" else ""
    return (f"{folder}/{img}/ISIC_xxxxxxx.jpg + {folder}/{gt}/ISIC_xxxxxxx{suffix} (official layout), "
            f"or {folder}/images/ + {folder}/masks/ISIC_xxxxxxx{_SIMPLE_MASK_SUFFIX} + "
            f"{folder}/splits/{split}.txt{alt}; datasets/README.md section 'ISIC {year} Task 1'")


def load_isic_task1(root: str, year: str, split: str, dataset_name: Optional[str] = None) -> List[Dict]:
    """ISIC ``year`` Task 1 ``split`` under ``root/<folder>``; layout chosen by what exists:
    the JSON list (2018 only), else ``splits/`` (simple layout), else the official folders."""
    folder, prefix, splits, suffix = ISIC_TASK1_YEARS[year]
    name = dataset_name or f"{prefix}_{split}"
    base = os.path.join(root, folder)
    hint = _task1_hint(year, split)
    require_path(base, name, hint)
    json_file = os.path.join(base, f"isic2018_sem_{split}.json")
    if year == "2018" and os.path.isfile(json_file):
        return load_sem_seg_json(json_file, base, dataset_name=name, layout_hint=hint)
    if os.path.isdir(os.path.join(base, "splits")):
        ids = read_split_file(os.path.join(base, "splits", f"{split}.txt"), name, hint)
        return load_sem_seg_pairs(
            os.path.join(base, "images"), os.path.join(base, "masks"), dataset_name=name, layout_hint=hint,
            image_pattern=_ISIC_ID + r"\.jpg", mask_name=lambda i: i + _SIMPLE_MASK_SUFFIX, ids=ids,
        )
    img_dir, gt_dir = splits[split]
    return load_sem_seg_pairs(
        os.path.join(base, img_dir), os.path.join(base, gt_dir), dataset_name=name, layout_hint=hint,
        image_pattern=_ISIC_ID + r"\.jpg", mask_name=lambda i: i + suffix,
        mask_pattern=_ISIC_ID + suffix.replace(".", r"\."),
    )


# ---------------------------------------------------------------------------------------------
# ISIC 2017 Task 1 at the original resolution
# ---------------------------------------------------------------------------------------------
# Scoring a model on the fixed-size copy only says how it does on squashed 256-px images; these
# two datasets score it against the official masks at their own resolution.
ISIC2017_VAL_FULLRES_METADATA = dict(ISIC_TASK1_METADATA, resize_predictions_to_gt=True)


def load_isic2017_val_fullres(root: str, split: str = "val", dataset_name: Optional[str] = None) -> List[Dict]:
    """``isic2017/images/`` (the stored fixed-size copies) paired with ``isic2017/masks_original/``
    (the official masks, larger and of another aspect ratio) for the ids of ``splits/{split}.txt``.
    ``height``/``width`` are the image's; the evaluator resizes predictions to the mask."""
    name = dataset_name or f"isic2017_sem_seg_{split}_fullres"
    base = os.path.join(root, "isic2017")
    hint = (f"isic2017/images/ISIC_xxxxxxx.jpg + isic2017/masks_original/ISIC_xxxxxxx{_SIMPLE_MASK_SUFFIX} + "
            f"isic2017/splits/{split}.txt; datasets/README.md section 'ISIC 2017 at the original resolution'")
    require_path(base, name, hint)
    ids = read_split_file(os.path.join(base, "splits", f"{split}.txt"), name, hint)
    return load_sem_seg_pairs(
        os.path.join(base, "images"), os.path.join(base, "masks_original"), dataset_name=name, layout_hint=hint,
        image_pattern=_ISIC_ID + r"\.jpg", mask_name=lambda i: i + _SIMPLE_MASK_SUFFIX, ids=ids,
        check_sizes=False,  # the masks are at the original resolution by design
    )


def load_isic2017_fullres(root: str, dataset_name: Optional[str] = None) -> List[Dict]:
    """Every ``isic2017_fullres/images/ISIC_xxxxxxx.jpg`` with ``masks/ISIC_xxxxxxx_segmentation.png``
    of the same size (original ISIC 2017 validation images)."""
    name = dataset_name or "isic2017_fullres_sem_seg_val"
    base = os.path.join(root, "isic2017_fullres")
    hint = (f"isic2017_fullres/images/ISIC_xxxxxxx.jpg + isic2017_fullres/masks/ISIC_xxxxxxx{_SIMPLE_MASK_SUFFIX}; "
            "datasets/README.md section 'ISIC 2017 at the original resolution'")
    return load_sem_seg_pairs(
        os.path.join(base, "images"), os.path.join(base, "masks"), dataset_name=name, layout_hint=hint,
        image_pattern=_ISIC_ID + r"\.jpg", mask_name=lambda i: i + _SIMPLE_MASK_SUFFIX,
        mask_pattern=_ISIC_ID + _SIMPLE_MASK_SUFFIX.replace(".", r"\."),
    )


# ---------------------------------------------------------------------------------------------
# ISIC 2018 Task 2
# ---------------------------------------------------------------------------------------------
_TASK2_SPLITS = {  # split -> (image folder, accepted ground-truth folder names)
    "train": ("ISIC2018_Task1-2_Training_Input",
              ("ISIC2018_Task2_Training_GroundTruth_v3", "ISIC2018_Task2_Training_GroundTruth")),
    "val": ("ISIC2018_Task1-2_Validation_Input", ("ISIC2018_Task2_Validation_GroundTruth",)),
    "test": ("ISIC2018_Task1-2_Test_Input", ("ISIC2018_Task2_Test_GroundTruth",)),
}


def load_isic2018_task2(root: str, split: str, dataset_name: Optional[str] = None,
                        check_sizes: bool = True) -> List[Dict]:
    """Dicts ``{file_name, height, width, image_id, label_file_names}`` (five attribute masks, in
    :data:`ISIC2018_TASK2_ATTRIBUTES` order). Every image needs all five files; a missing one is an
    error naming it (the official release has them all, empty ones included)."""
    name = dataset_name or f"isic2018_task2_{split}"
    img_dir, gt_names = _TASK2_SPLITS[split]
    base = os.path.join(root, "isic2018")
    gt_dirs = [os.path.join(base, g) for g in gt_names]
    gt_dir = next((g for g in gt_dirs if os.path.isdir(g)), gt_dirs[0])
    hint = (f"isic2018/{img_dir}/ISIC_xxxxxxx.jpg + isic2018/{gt_names[0]}/ISIC_xxxxxxx_attribute_<a>.png for "
            f"a in {', '.join(ISIC2018_TASK2_ATTRIBUTES)}; datasets/README.md section 'ISIC 2018 Task 2'")
    pairs = load_sem_seg_pairs(
        os.path.join(base, img_dir), gt_dir, dataset_name=name, layout_hint=hint,
        image_pattern=_ISIC_ID + r"\.jpg", mask_name=lambda i: f"{i}_attribute_{ISIC2018_TASK2_ATTRIBUTES[0]}.png",
        check_sizes=False,
    )
    present = set(os.listdir(gt_dir))
    missing, out = [], []
    for d in pairs:
        files = [os.path.join(gt_dir, f"{d['image_id']}_attribute_{a}.png") for a in ISIC2018_TASK2_ATTRIBUTES]
        missing += [f for f in files if os.path.basename(f) not in present]
        d = {k: v for k, v in d.items() if k != "sem_seg_file_name"}
        d["label_file_names"] = files
        out.append(d)
    if missing:
        shown = "\n  ".join(missing[:10]) + (f"\n  ... and {len(missing) - 10} more" if len(missing) > 10 else "")
        raise DataFileError(f"Dataset '{name}': {len(missing)} attribute masks are missing:\n  {shown}")
    if check_sizes:
        for d in out:
            for f in d["label_file_names"]:
                check_same_hw(d["file_name"], (d["height"], d["width"]), f)
    return out


# ---------------------------------------------------------------------------------------------
# ISIC 2017 Part 2, .mat index maps
# ---------------------------------------------------------------------------------------------
_PART2_FOLDERS = (  # (image folder, .mat folder) searched in this order for every id
    ("ISIC-2017_Training_Data", "ISIC-2017_Training_Part2_GroundTruth/gtann"),
    ("ISIC-2017_Validation_Data", "ISIC-2017_Validation_Part2_GroundTruth/gtann"),
    ("ISIC-2017_Test_v2_Data", "ISIC-2017_Test_v2_Part2_GroundTruth/gtann"),
)


def load_isic2017_part2_mat(root: str, split: str, dataset_name: Optional[str] = None) -> List[Dict]:
    """Ids from ``isic2017_part2/{split}.txt``; each id's image and ``gtann/<id>.mat`` are looked up
    in the training, validation and test folders (the id lists mix them)."""
    name = dataset_name or f"isic2017_part2_mat_{split}"
    base = os.path.join(root, "isic2017_part2")
    hint = ("isic2017_part2/{train,val,test}.txt + isic2017_part2/ISIC-2017_{Training,Validation,Test_v2}_Data/"
            "<ID>.jpg + isic2017_part2/ISIC-2017_{Training,Validation,Test_v2}_Part2_GroundTruth/gtann/<ID>.mat; "
            "see datasets/README.md 'ISIC 2017 Part 2 (.mat)'")
    ids = read_split_file(os.path.join(base, f"{split}.txt"), name, hint)
    folders = [(os.path.join(base, i), os.path.join(base, m)) for i, m in _PART2_FOLDERS]
    if not any(os.path.isdir(i) for i, _ in folders):
        require_path(folders[0][0], name, hint)
    index = {}
    for img_dir, mat_dir in folders:
        if os.path.isdir(img_dir):
            for n in os.listdir(img_dir):
                stem, ext = os.path.splitext(n)
                if ext.lower() == ".jpg" and stem not in index:
                    index[stem] = (os.path.join(img_dir, n), os.path.join(mat_dir, stem + ".mat"))
    no_image = [i for i in ids if i not in index]
    no_mat = [index[i][1] for i in ids if i in index and not os.path.isfile(index[i][1])]
    if no_image or no_mat:
        msg = []
        if no_image:
            msg.append(f"{len(no_image)} ids have no <ID>.jpg in {[f for f, _ in folders]}: {no_image[:10]}")
        if no_mat:
            msg.append(f"{len(no_mat)} images have no .mat ground truth: {no_mat[:10]}")
        raise DataFileError(f"Dataset '{name}': " + "; ".join(msg))
    out = []
    for i in ids:
        file_name, mat = index[i]
        h, w = image_hw(file_name)
        out.append({"file_name": file_name, "sem_seg_file_name": mat, "height": h, "width": w, "image_id": i})
    return out


# ---------------------------------------------------------------------------------------------
# registration
# ---------------------------------------------------------------------------------------------
def _register(name: str, loader, metadata: Dict, **extra) -> None:
    DatasetCatalog.register(name, loader)
    MetadataCatalog.get(name).set(**metadata, **extra)


def register_isic_task1(root: str) -> None:
    """Register ``isic<year>_sem_seg_<split>`` (ISIC 2016-2018 Task 1 lesion masks) under ``root``."""
    for year, (folder, prefix, splits, _) in ISIC_TASK1_YEARS.items():
        for split in splits:
            name = f"{prefix}_{split}"
            _register(name, lambda y=year, s=split, n=name: load_isic_task1(root, y, s, n), ISIC_TASK1_METADATA,
                      root=os.path.join(root, folder))


def register_isic2017_fullres(root: str) -> None:
    """Register the full-resolution ISIC 2017 val sets: ``isic2017_sem_seg_val_fullres`` (val images at
    the original size) and ``isic2017_fullres_sem_seg_val`` (the ``isic2017_fullres`` folder)."""
    _register("isic2017_sem_seg_val_fullres", lambda: load_isic2017_val_fullres(root, "val"),
              ISIC2017_VAL_FULLRES_METADATA, root=os.path.join(root, "isic2017"))
    _register("isic2017_fullres_sem_seg_val", lambda: load_isic2017_fullres(root), ISIC_TASK1_METADATA,
              root=os.path.join(root, "isic2017_fullres"))


def register_isic2018_task2(root: str) -> None:
    """Register ``isic2018_task2_<split>`` (five lesion attributes, one binary mask file each)."""
    for split in _TASK2_SPLITS:
        name = f"isic2018_task2_{split}"
        _register(name, lambda s=split, n=name: load_isic2018_task2(root, s, n), ISIC2018_TASK2_METADATA,
                  root=os.path.join(root, "isic2018"))


def register_isic2017_part2_mat(root: str) -> None:
    """Register ``isic2017_part2_mat_<split>`` (ISIC 2017 Part 2 superpixel attributes in ``.mat`` files)."""
    for split in ("train", "val", "test"):
        name = f"isic2017_part2_mat_{split}"
        _register(name, lambda s=split, n=name: load_isic2017_part2_mat(root, s, n), ISIC2017_PART2_METADATA,
                  root=os.path.join(root, "isic2017_part2"))


def register_all_isic(root: str) -> None:
    """Register every ISIC dataset under ``root``."""
    register_isic_task1(root)
    register_isic2017_fullres(root)
    register_isic2018_task2(root)
    register_isic2017_part2_mat(root)


def builtin_names() -> List[str]:
    """Names :func:`register_all_isic` registers."""
    names = [f"{prefix}_{s}" for _, prefix, splits, _ in ISIC_TASK1_YEARS.values() for s in splits]
    names += ["isic2017_sem_seg_val_fullres", "isic2017_fullres_sem_seg_val"]
    names += [f"isic2018_task2_{s}" for s in _TASK2_SPLITS]
    names += [f"isic2017_part2_mat_{s}" for s in ("train", "val", "test")]
    return names
