"""Score a folder of predicted masks against a folder of ground-truth masks.

    skinformer-evaluate --gt-dir GT --pred-dir PRED --metric isic_task1 --output result.json
    python tools/evaluate.py --gt-dir GT --pred-dir PRED --metric isic_task1 --output result.json

Metrics, file matching and mask decoding are described in :mod:`skinformer.evaluation.folder`.
Problems are reported naming the files; the exit status is then 2.
"""
import argparse
import json
import os
import sys
from typing import Optional, Sequence

from tabulate import tabulate

from skinformer.data import mask_io
from skinformer.evaluation.folder import DEFAULT_GT_SUFFIX, METRICS, FolderScoring, MaskFolderError, score_folders

__all__ = ["build_parser", "run", "main", "MaskFolderError"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gt-dir", required=True, help="folder of ground-truth masks")
    p.add_argument("--pred-dir", required=True, help="folder of predicted masks")
    p.add_argument("--metric", required=True, choices=sorted(METRICS))
    p.add_argument("--output", default=None, help="write the results as JSON here")
    p.add_argument("--gt-suffix", default=None,
                   help="ground-truth file name ending removed to get the key (default: " +
                        ", ".join(f"{k}: {v!r}" for k, v in DEFAULT_GT_SUFFIX.items()) + ")")
    p.add_argument("--pred-suffix", default=None,
                   help="prediction file name ending removed to get the key (default: the ground-truth "
                        "suffix when predictions carry the ground-truth names, else '.png')")
    p.add_argument("--threshold", type=float, default=127,
                   help="binary masks: foreground is value > threshold (0/1 masks: > 0); official ISIC uses 128")
    p.add_argument("--attributes", nargs="+", default=None, help="isic_task2: attributes to score, in this order")
    p.add_argument("--num-classes", type=int, default=None, help="sem_seg: number of classes K")
    p.add_argument("--class-names", nargs="+", default=None, help="sem_seg: K class names")
    p.add_argument("--ignore-label", type=int, default=255, help="sem_seg: ground-truth label that is ignored")
    p.add_argument("--has-background-class", dest="background_is_class", action="store_true",
                   help="sem_seg: background is one of the K classes (else label K = background)")
    p.add_argument("--background-index", type=int, default=0, help="sem_seg: the background class for *_fg means")
    return p


def run(args: argparse.Namespace) -> dict:
    """Score the folders described by parsed ``args`` (and write ``--output``); returns the report
    of :func:`skinformer.evaluation.folder.score_folders`."""
    options = {name: getattr(args, name) for name in FolderScoring.__dataclass_fields__
               if name not in ("gt_dir", "pred_dir", "metric")}
    report = score_folders(args.gt_dir, args.pred_dir, args.metric, **options)
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with open(args.output, "w") as f:
            json.dump(report, f, indent=1)
    return report


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        report = run(args)
    except (MaskFolderError, mask_io.DataFileError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    rows = [[k, v] for k, v in report["results"].items()]
    print(f"{args.metric}: {report['num_images']} images ({args.gt_dir} vs {args.pred_dir})")
    print(tabulate(rows, headers=["metric", "value"], tablefmt="pipe", floatfmt=".4f"))
    if args.output:
        print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
