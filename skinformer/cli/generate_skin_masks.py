"""Derive binary skin masks (acne / hemo / mela) from pairs of camera captures; the rule is
described in :mod:`skinformer.data.skin_masks`.

Example::

    python tools/generate_skin_masks.py --dataset-dir data_raw/acne
    python tools/generate_skin_masks.py --dataset-dir data_raw/mela --reduce luminance
"""
import argparse
import logging
import sys
from typing import Optional, Sequence

from skinformer.data import skin_masks
from skinformer.data.datasets.skin import SKIN_TYPES
from skinformer.data.skin_masks import DEFAULT_THRESHOLDS, REDUCTIONS, format_summary, generate_masks

__all__ = ["get_parser", "main"]


def get_parser() -> argparse.ArgumentParser:
    # --help shows the whole rule (the library's docstring) and the examples
    description = skin_masks.__doc__.split("\nCommand line:")[0] + "\n" + __doc__[__doc__.index("Example::"):]
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset-dir", "--dataset_dir", required=True, help="folder with the raw captures")
    p.add_argument("--type", choices=SKIN_TYPES, default=None,
                   help="only process files of this type (default: every type found)")
    p.add_argument("--threshold", type=float, default=None,
                   help="difference threshold (strictly above = lesion); default per type: "
                   + ", ".join(f"{k} {v}" for k, v in DEFAULT_THRESHOLDS.items()))
    p.add_argument("--reduce", choices=REDUCTIONS, default="max",
                   help="collapse the colour difference by its channel maximum or its luminance")
    p.add_argument("--output-dir", default=None, help="where to write masks (default: next to the originals)")
    p.add_argument("--no-overwrite", action="store_true", help="keep masks that already exist")
    p.add_argument("--strict", action="store_true", help="exit with status 1 if any file was reported")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    report = generate_masks(args.dataset_dir, args.type, args.threshold, args.reduce, args.output_dir,
                            overwrite=not args.no_overwrite)
    print(format_summary(report))
    if not report.pairs:
        print(f"No <id>_org_<type> / <id>_<digits>_<type> pairs found in {args.dataset_dir}", file=sys.stderr)
        return 1
    return 1 if (args.strict and report.num_problems) else 0


if __name__ == "__main__":
    sys.exit(main())
