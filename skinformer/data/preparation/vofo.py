"""Install Seg-VoFo (vocal folds; private, from Cho Ray Hospital via SiMaskFormer's authors) and check it.

With SiMaskFormer's split lists::

    python datasets/prepare_vofo.py --download path/to/VoFo --check -1

With only image and mask folders, write seeded split lists first::

    python datasets/prepare_vofo.py --download path/to/VoFo --make-splits --images-dir images \
        --masks-dir masks --val-fraction 0.1 --test-fraction 0.2 --seed 0

Result under ``$SKINFORMER_DATASETS``::

    vofo/vofo_sem_{train,val,test}.json   # {"images": [{"id", "file_name", "mask_name"}]}, relative to vofo/
    vofo/<images>.jpg, vofo/<masks>.png   # colour masks, class = luma gray value

``--check -1`` decodes every mask: a grey value outside the 7 classes (anti-aliasing, JPEG) is
reported with the file and the value.
"""
import json
import os
import sys

import numpy as np

from .common import add_split_arguments, base_parser, check_splits, datasets_root_from, place

from skinformer.data.datasets import vofo

SPLITS = ("train", "val", "test")


def make_splits(base, images_dir, masks_dir, val_fraction, test_fraction, seed):
    imgs = {os.path.splitext(n)[0]: n for n in os.listdir(os.path.join(base, images_dir))
            if n.lower().endswith((".jpg", ".jpeg", ".png"))}
    masks = {os.path.splitext(n)[0]: n for n in os.listdir(os.path.join(base, masks_dir))
             if n.lower().endswith(".png")}
    unpaired = sorted(set(imgs) ^ set(masks))
    if unpaired:
        print(f"  {len(unpaired)} images/masks without a partner are left out: {unpaired[:5]}", file=sys.stderr)
    ids = sorted(set(imgs) & set(masks))
    order = np.random.default_rng(seed).permutation(len(ids))
    n_test, n_val = int(round(len(ids) * test_fraction)), int(round(len(ids) * val_fraction))
    parts = {"test": order[:n_test], "val": order[n_test:n_test + n_val], "train": order[n_test + n_val:]}
    for split, idx in parts.items():
        entries = [{"id": int(k), "file_name": os.path.join(images_dir, imgs[ids[k]]),
                    "mask_name": os.path.join(masks_dir, masks[ids[k]])} for k in sorted(idx)]
        with open(os.path.join(base, f"vofo_sem_{split}.json"), "w") as f:
            json.dump({"images": entries}, f)
    print("  wrote split lists: " + ", ".join(f"{k} {len(v)}" for k, v in parts.items()))


def main(argv=None) -> int:
    p = base_parser(__doc__)
    p.add_argument("--download", default=None, help="folder with the VoFo images, masks (and split lists)")
    p.add_argument("--make-splits", action="store_true")
    p.add_argument("--images-dir", default="images")
    p.add_argument("--masks-dir", default="masks")
    add_split_arguments(p, test_fraction=0.2)
    args = p.parse_args(argv)
    root = datasets_root_from(args.root)
    base = os.path.join(root, "vofo")
    if args.download:
        for n in sorted(os.listdir(args.download)):
            place(os.path.join(args.download, n), os.path.join(base, n), args.link)
    if args.make_splits:
        make_splits(base, args.images_dir, args.masks_dir, args.val_fraction, args.test_fraction, args.seed)
    loaders = {f"vofo_sem_seg_{s}": (lambda s=s: vofo.load_vofo(root, s)) for s in SPLITS}
    problems = check_splits(loaders, {n: vofo.VOFO_METADATA for n in loaders}, args.check)
    print(f"\nRoot: {root} (set SKINFORMER_DATASETS={root} to use it)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
