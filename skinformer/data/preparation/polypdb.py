"""Install PolypDB_INS (SiMaskFormer's polyp data) into the registered layout and check it.

Download the archive from SiMaskFormer's README (Google Drive file id
``1olTs9hZA4o81vfrYO32oZVuGzvTVNIQ_``) and run::

    python datasets/prepare_polypdb.py --download ~/Downloads/PolypDB_INS.zip

Result under ``$SKINFORMER_DATASETS``::

    polypdb_ins/polypdb_ins_{train,val,test}.json   # COCO instances, file_name relative to polypdb_ins/
    polypdb_ins/polypdb_sem_{train,val,test}.json   # {"images": [{"id", "file_name", "mask_name"}]}
    polypdb_ins/<the images and JPEG masks the lists name>

The archive's content is unpacked (or, for a folder, copied / linked) into ``polypdb_ins/``; a zip
with a single top folder is flattened. SiMaskFormer's split lists are not part of its repository:
if the semantic lists are missing, ``--make-sem-lists --mask-dir <folder>`` writes them from the
COCO jsons' images, pairing each image with the mask of the same stem in ``<folder>``.
"""
import json
import os
import shutil
import sys

from .common import base_parser, check_splits, datasets_root_from, extract_zip, place

from skinformer.data.datasets import polyp

SPLITS = ("train", "val", "test")


def install(download: str, base: str, link: bool) -> None:
    os.makedirs(base, exist_ok=True)
    if os.path.isfile(download) and download.endswith(".zip"):
        tmp = os.path.join(base, "_unpack")
        tops = extract_zip(download, tmp)
        src = os.path.join(tmp, tops[0]) if len(tops) == 1 and os.path.isdir(os.path.join(tmp, tops[0])) else tmp
        for n in os.listdir(src):
            if not os.path.lexists(os.path.join(base, n)):
                shutil.move(os.path.join(src, n), os.path.join(base, n))
        shutil.rmtree(tmp)
    elif os.path.isdir(download):
        for n in sorted(os.listdir(download)):
            place(os.path.join(download, n), os.path.join(base, n), link)
    else:
        raise FileNotFoundError(f"--download {download} is neither a .zip nor a folder")


def make_sem_lists(base: str, mask_dir: str) -> None:
    masks = {os.path.splitext(n)[0]: n for n in os.listdir(os.path.join(base, mask_dir))}
    for split in SPLITS:
        out = os.path.join(base, f"polypdb_sem_{split}.json")
        src = os.path.join(base, f"polypdb_ins_{split}.json")
        if os.path.isfile(out) or not os.path.isfile(src):
            continue
        with open(src) as f:
            images = json.load(f)["images"]
        entries, unpaired = [], []
        for im in images:
            stem = os.path.splitext(os.path.basename(im["file_name"]))[0]
            if stem not in masks:
                unpaired.append(im["file_name"])
                continue
            entries.append({"id": im["id"], "file_name": im["file_name"],
                            "mask_name": os.path.join(mask_dir, masks[stem])})
        if unpaired:
            print(f"  {len(unpaired)} images of {src} have no mask in {mask_dir}: {unpaired[:5]}", file=sys.stderr)
        with open(out, "w") as f:
            json.dump({"images": entries}, f)
        print(f"  wrote {out}: {len(entries)} images")


def main(argv=None) -> int:
    p = base_parser(__doc__)
    p.add_argument("--download", default=None, help="the PolypDB_INS zip or extracted folder (omit to only check)")
    p.add_argument("--make-sem-lists", action="store_true")
    p.add_argument("--mask-dir", default="masks", help="mask folder relative to polypdb_ins/ for --make-sem-lists")
    args = p.parse_args(argv)
    root = datasets_root_from(args.root)
    base = os.path.join(root, "polypdb_ins")
    if args.download:
        install(args.download, base, args.link)
    if args.make_sem_lists:
        make_sem_lists(base, args.mask_dir)
    loaders, metadata = {}, {}
    for s in SPLITS:
        loaders[f"polypdb_ins_{s}"] = lambda s=s: polyp.load_polypdb_ins(root, s)
        loaders[f"polypdb_ins_sem_seg_{s}"] = lambda s=s: polyp.load_polypdb_sem_seg(root, s)
        metadata[f"polypdb_ins_{s}"] = polyp.POLYPDB_INS_METADATA
        metadata[f"polypdb_ins_sem_seg_{s}"] = polyp.POLYP_SEM_SEG_METADATA
    problems = check_splits(loaders, metadata, args.check)
    print(f"\nRoot: {root} (set SKINFORMER_DATASETS={root} to use it)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
