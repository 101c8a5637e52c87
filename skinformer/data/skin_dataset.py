"""Split paired skin captures into the registered ``skin_<type>_{train,val,test}`` layout.

Input: a folder with ``<id>_org_<type>.jpg`` images and their ``<id>_mask_<type>.png`` 0/1 masks
(written by ``tools/generate_skin_masks.py``, :mod:`skinformer.data.skin_masks`). Output (under
``--output-root``, default ``$SKINFORMER_DATASETS``)::

    skin/<type>/{train,val,test}/images/<id>_org_<type>.jpg
    skin/<type>/{train,val,test}/masks/<id>_mask_<type>.png
    skin/<type>/split.json        # the ids of each split, the seed and the fractions

The split is a seeded permutation of the sorted ids, so the same inputs, seed and fractions always
give the same split (the original project's split was unseeded). Files are copied, or symlinked with
``--link``. Images without a mask are reported and left out.

Command line: ``tools/create_skin_dataset.py`` (:mod:`skinformer.cli.create_skin_dataset`).
"""
import json
import math
import os
import re
import shutil
import sys
from typing import Dict, List, Tuple

import numpy as np

SPLITS = ("train", "val", "test")
_ORG_RE = re.compile(r"^(?P<id>.+)_org_(?P<type>[A-Za-z0-9]+)\.(jpg|jpeg|png)$", re.IGNORECASE)


def find_pairs(raw_dir: str, skin_type: str) -> Tuple[Dict[str, Tuple[str, str]], List[str]]:
    """``{id: (image_path, mask_path)}`` and the images that have no mask."""
    if not os.path.isdir(raw_dir):
        raise FileNotFoundError(f"--raw-dir {raw_dir} is not a folder")
    pairs, missing = {}, []
    for n in sorted(os.listdir(raw_dir)):
        m = _ORG_RE.match(n)
        if not m or m.group("type") != skin_type:
            continue
        mask = os.path.join(raw_dir, f"{m.group('id')}_mask_{skin_type}.png")
        if m.group("id") in pairs:
            raise ValueError(f"Two originals for id '{m.group('id')}' in {raw_dir}: "
                             f"{os.path.basename(pairs[m.group('id')][0])} and {n}; keep one")
        if os.path.isfile(mask):
            pairs[m.group("id")] = (os.path.join(raw_dir, n), mask)
        else:
            missing.append(os.path.join(raw_dir, n))
    return pairs, missing


def split_ids(ids: List[str], val_fraction: float, test_fraction: float, seed: int) -> Dict[str, List[str]]:
    """Seeded split of ``ids``: the result depends only on the set of ids, the seed and the fractions."""
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(f"fractions must be in [0, 1) and sum below 1, got val {val_fraction}, "
                         f"test {test_fraction}")
    ids = sorted(ids)
    order = np.random.default_rng(seed).permutation(len(ids))
    n_test = int(math.floor(len(ids) * test_fraction + 0.5))
    n_val = int(math.floor(len(ids) * val_fraction + 0.5))
    shuffled = [ids[i] for i in order]
    out = {"test": shuffled[:n_test], "val": shuffled[n_test:n_test + n_val], "train": shuffled[n_test + n_val:]}
    return {k: sorted(v) for k, v in out.items()}


def _place(src: str, dst: str, link: bool) -> None:
    if os.path.lexists(dst):
        os.remove(dst)
    if link:
        os.symlink(os.path.abspath(src), dst)
    else:
        shutil.copy2(src, dst)


def create_skin_dataset(raw_dir: str, skin_type: str, output_root: str, val_fraction: float = 0.1,
                        test_fraction: float = 0.1, seed: int = 0, link: bool = False,
                        overwrite: bool = False, progress: bool = True) -> Dict[str, List[str]]:
    """Write the registered layout; returns ``{split: [ids]}``. See the module docstring."""
    pairs, missing = find_pairs(raw_dir, skin_type)
    if missing:
        print(f"{len(missing)} images have no {skin_type} mask and are left out, e.g. {missing[:5]}",
              file=sys.stderr)
    if not pairs:
        raise FileNotFoundError(f"No <id>_org_{skin_type}.jpg + <id>_mask_{skin_type}.png pairs in {raw_dir}; "
                                "run tools/generate_skin_masks.py first")
    splits = split_ids(list(pairs), val_fraction, test_fraction, seed)
    base = os.path.join(output_root, "skin", skin_type)
    for split in SPLITS:
        for sub in ("images", "masks"):
            d = os.path.join(base, split, sub)
            if os.path.isdir(d) and os.listdir(d):
                if not overwrite:
                    raise FileExistsError(f"{d} is not empty; pass --overwrite to replace the split")
                shutil.rmtree(d)
            os.makedirs(d, exist_ok=True)

    jobs = [(split, i) for split in SPLITS for i in splits[split]]
    if progress:
        from tqdm import tqdm

        jobs = tqdm(jobs, desc=f"skin/{skin_type}", unit="pair")
    for split, i in jobs:
        img, mask = pairs[i]
        _place(img, os.path.join(base, split, "images", os.path.basename(img)), link)
        _place(mask, os.path.join(base, split, "masks", os.path.basename(mask)), link)
    with open(os.path.join(base, "split.json"), "w") as f:
        json.dump({"seed": seed, "val_fraction": val_fraction, "test_fraction": test_fraction,
                   "source": os.path.abspath(raw_dir), **splits}, f, indent=1)
    return splits
