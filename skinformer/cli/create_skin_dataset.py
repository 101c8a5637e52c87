"""Split paired skin captures into the registered ``skin_<type>_{train,val,test}`` layout; see
:mod:`skinformer.data.skin_dataset`.

Example::

    python tools/create_skin_dataset.py --raw-dir data_raw/acne --type acne --seed 0 \\
        --val-fraction 0.1 --test-fraction 0.1
"""
import argparse
import sys
from typing import List, Optional

from skinformer.data import skin_dataset
from skinformer.data.catalog import datasets_root
from skinformer.data.datasets.skin import SKIN_TYPES
from skinformer.data.skin_dataset import SPLITS, create_skin_dataset

__all__ = ["get_parser", "main"]


def get_parser() -> argparse.ArgumentParser:
    # --help shows the layout (the library's docstring) and the example
    description = skin_dataset.__doc__.split("\nCommand line:")[0] + "\n" + __doc__[__doc__.index("Example::"):]
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--raw-dir", "--dataset_dir", required=True, help="folder with images and generated masks")
    p.add_argument("--type", choices=SKIN_TYPES, required=True)
    p.add_argument("--output-root", default=None,
                   help="datasets root (default: $SKINFORMER_DATASETS, else ./datasets)")
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--test-fraction", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--link", action="store_true", help="symlink instead of copying")
    p.add_argument("--overwrite", action="store_true", help="replace splits that already hold files")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = get_parser().parse_args(argv)
    root = args.output_root or datasets_root()
    splits = create_skin_dataset(args.raw_dir, args.type, root, args.val_fraction, args.test_fraction,
                                 args.seed, args.link, args.overwrite)
    total = sum(len(v) for v in splits.values())
    print(f"skin/{args.type} under {root}: " + ", ".join(f"{s} {len(splits[s])}" for s in SPLITS)
          + f" (total {total}, seed {args.seed})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
