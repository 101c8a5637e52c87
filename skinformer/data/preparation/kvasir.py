"""Install Kvasir-SEG into the registered layout, write a seeded split and (optionally) instances.

Download ``kvasir-seg.zip`` from https://datasets.simula.no/kvasir-seg/ and run::

    python datasets/prepare_kvasir.py --download ~/Downloads/kvasir-seg.zip --write-instances

Result under ``$SKINFORMER_DATASETS``::

    kvasir_seg/Kvasir-SEG/{images,masks}/<id>.jpg     # the zip's folder, unpacked (or linked)
    kvasir_seg/splits/{train,val,test}.txt            # written if absent: seeded, 70/10/20 by default
    kvasir_seg/annotations/instances_derived_from_masks.json   # with --write-instances

Kvasir-SEG has no official split; the split files decide ``kvasir_seg_*`` and ``kvasir_ins_*``.
``--write-instances`` stores the mask-derived instances (8-connected components >= 50 px, exact
RLE) as COCO json so ``kvasir_ins_*`` need not decode every mask at start-up.
"""
import json
import os
import sys

import numpy as np

from .common import add_split_arguments, base_parser, check_splits, datasets_root_from, extract_zip, install_member

from skinformer.data.datasets import kvasir
from skinformer.data.datasets.coco import image_hw

SPLITS = ("train", "val", "test")


def write_splits(base: str, img_dir: str, val_fraction: float, test_fraction: float, seed: int) -> None:
    names = sorted(n for n in os.listdir(img_dir) if n.lower().endswith(".jpg"))
    order = np.random.default_rng(seed).permutation(len(names))
    n_test, n_val = int(round(len(names) * test_fraction)), int(round(len(names) * val_fraction))
    parts = {"test": order[:n_test], "val": order[n_test:n_test + n_val], "train": order[n_test + n_val:]}
    os.makedirs(os.path.join(base, "splits"), exist_ok=True)
    for split, idx in parts.items():
        with open(os.path.join(base, "splits", f"{split}.txt"), "w") as f:
            f.write("".join(f"{names[i]}\n" for i in sorted(idx)))
    print(f"  wrote splits (seed {seed}): " + ", ".join(f"{k} {len(v)}" for k, v in parts.items()))


def write_instances(base: str, img_dir: str, mask_dir: str) -> str:
    from pycocotools import mask as mask_util
    from tqdm import tqdm

    images, annotations = [], []
    names = sorted(n for n in os.listdir(img_dir) if n.lower().endswith(".jpg"))
    for k, n in enumerate(tqdm(names, desc="instances", unit="mask"), start=1):
        h, w = image_hw(os.path.join(img_dir, n))
        images.append({"id": k, "file_name": n, "height": h, "width": w})
        for a in kvasir.instances_from_mask(os.path.join(mask_dir, n)):
            seg = a["segmentation"]
            area = float(mask_util.area(dict(seg, counts=seg["counts"].encode("ascii"))))
            annotations.append({"id": len(annotations) + 1, "image_id": k, "category_id": 1, "iscrowd": 0,
                                "segmentation": seg, "bbox": a["bbox"], "area": area})
    out = os.path.join(base, "annotations", "instances_derived_from_masks.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump({"info": {"description": "Kvasir-SEG instances derived from the masks (threshold 128, "
                                           f"8-connected, area >= {kvasir.MIN_INSTANCE_AREA} px, RLE)"},
                   "images": images, "annotations": annotations,
                   "categories": [{"id": 1, "name": "polyp", "supercategory": "polyp"}]}, f)
    print(f"  wrote {out}: {len(annotations)} instances in {len(images)} images")
    return out


def main(argv=None) -> int:
    p = base_parser(__doc__)
    p.add_argument("--download", default=None, help="kvasir-seg.zip, or the folder holding Kvasir-SEG/")
    add_split_arguments(p, test_fraction=0.2)
    p.add_argument("--write-instances", action="store_true")
    args = p.parse_args(argv)
    root = datasets_root_from(args.root)
    base = os.path.join(root, "kvasir_seg")
    if args.download:
        src = args.download
        if src.endswith(".zip") and os.path.basename(src) != "Kvasir-SEG.zip":
            # the zip's top folder is Kvasir-SEG/ whatever the archive is called
            if not os.path.isdir(os.path.join(base, "Kvasir-SEG")):
                extract_zip(src, base)
        elif not install_member(src, "Kvasir-SEG", base, args.link):
            print(f"{src} holds no Kvasir-SEG/ folder or zip", file=sys.stderr)
            return 1
    img_dir, mask_dir = kvasir._image_mask_dirs(base)
    if not os.path.isdir(img_dir):
        print(f"No images in {img_dir}; pass --download", file=sys.stderr)
        return 1
    if not all(os.path.isfile(os.path.join(base, "splits", f"{s}.txt")) for s in SPLITS):
        write_splits(base, img_dir, args.val_fraction, args.test_fraction, args.seed)
    if args.write_instances:
        write_instances(base, img_dir, mask_dir)
    loaders = {}
    for s in SPLITS:
        loaders[f"kvasir_seg_{s}"] = lambda s=s: kvasir.load_kvasir_seg(root, s)
        loaders[f"kvasir_ins_{s}"] = lambda s=s: kvasir.load_kvasir_ins(root, s)
    metadata = {n: (kvasir.KVASIR_SEG_METADATA if "_seg_" in n else kvasir.KVASIR_INS_METADATA) for n in loaders}
    problems = check_splits(loaders, metadata, args.check)
    print(f"\nRoot: {root} (set SKINFORMER_DATASETS={root} to use it)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
