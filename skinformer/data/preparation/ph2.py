"""Install the PH2 dermoscopy dataset (https://www.fc.up.pt/addi/ph2%20database.html) and check it.

The release is ``PH2Dataset.rar``; unpack it first (``unrar x PH2Dataset.rar`` or ``7z x``), or
pass a zip of it, then::

    python datasets/prepare_ph2.py --download path/to/PH2Dataset

Result under ``$SKINFORMER_DATASETS``::

    ph2/PH2 Dataset images/IMDxxx/IMDxxx_Dermoscopic_Image/IMDxxx.bmp
    ph2/PH2 Dataset images/IMDxxx/IMDxxx_lesion/IMDxxx_lesion.bmp
"""
import os
import sys

from .common import base_parser, check_splits, datasets_root_from, extract_zip, place

from skinformer.data.datasets import ph2

IMAGES = "PH2 Dataset images"


def main(argv=None) -> int:
    p = base_parser(__doc__)
    p.add_argument("--download", default=None, help="unpacked PH2Dataset folder (or a zip of it)")
    args = p.parse_args(argv)
    root = datasets_root_from(args.root)
    base = os.path.join(root, "ph2")
    if args.download:
        src = args.download
        if src.lower().endswith(".rar"):
            print(f"{src}: unpack the .rar first (unrar x / 7z x) and pass the folder", file=sys.stderr)
            return 1
        if src.lower().endswith(".zip"):
            extract_zip(src, base)
        else:
            cands = [os.path.join(src, IMAGES), os.path.join(src, "PH2Dataset", IMAGES)]
            found = next((c for c in cands if os.path.isdir(c)), None)
            if found is None:
                print(f"No '{IMAGES}' folder in {src}", file=sys.stderr)
                return 1
            place(found, os.path.join(base, IMAGES), args.link)
    problems = check_splits({"ph2_sem_seg": lambda: ph2.load_ph2(root)}, {"ph2_sem_seg": ph2.PH2_METADATA},
                            args.check)
    print(f"\nRoot: {root} (set SKINFORMER_DATASETS={root} to use it)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
