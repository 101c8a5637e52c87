"""Check every image and mask of a registered dataset and print a report.

Examples::

    skinformer-validate --dataset isic_sem_seg_train
    python tools/validate_dataset.py --definitions my_lesions.yaml --dataset my_lesions_train --max 200

Exit code 0 when no errors were found, 1 otherwise (notes such as 0/255 masks are not errors).
The checks are :func:`skinformer.data.validation.validate_dataset`'s.
"""
import argparse
import logging
import sys
from typing import Optional, Sequence

__all__ = ["get_parser", "main"]


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, action="append",
                        help="registered dataset name (repeat the flag for several)")
    parser.add_argument("--definitions", nargs="*", default=[],
                        help="folder-dataset YAML files to register first (as DATASETS.DEFINITIONS)")
    parser.add_argument("--max", type=int, default=None, help="check only the first N samples of each dataset")
    parser.add_argument("--max-listed", type=int, default=10, help="problems listed per kind")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = get_parser().parse_args(argv)

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # imported after parsing so that --help answers without loading torch
    from skinformer.data.datasets.folder import register_folder_datasets
    from skinformer.data.validation import validate_dataset

    if args.definitions:
        names = register_folder_datasets(args.definitions)
        print(f"Registered folder datasets: {', '.join(names)}")
    failed = False
    for name in args.dataset:
        try:
            report = validate_dataset(name, max_images=args.max, progress=not args.no_progress)
        except (KeyError, FileNotFoundError, ValueError) as e:
            print(f"Dataset '{name}': cannot be loaded: {e}")
            failed = True
            continue
        print(report.format(max_per_kind=args.max_listed))
        failed |= not report.ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
