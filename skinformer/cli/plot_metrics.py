"""Plot training and evaluation curves from one or more runs' ``metrics.json``.

    python tools/plot_metrics.py out/r50_isic out/swin_isic --out figures/curves.png
    python tools/plot_metrics.py out/x --keys total_loss loss_dice lr isic_task1/threshold_jaccard --smooth 20

Each OUTPUT_DIR (or a ``metrics.json`` path itself) holds the lines written by
``skinformer.utils.events.JSONWriter``: one JSON object per line, ``{"iteration": i, <key>: value}``.
Evaluation results are flattened ``task/metric`` keys (``isic_task1/threshold_jaccard``,
``sem_seg/mIoU``) present only on the lines of the iterations they were computed at. A resumed
run appends to the same file and may repeat iterations: the value written last wins.

Default keys: ``total_loss``, ``lr`` and every evaluation key (one containing ``/``) found in
any run. One subplot per key, one line per run labelled by its folder name. The reading and
drawing live in :mod:`skinformer.utils.plot`.
"""
import argparse
import sys
from collections import OrderedDict
from typing import Optional, Sequence

from skinformer.utils.plot import MetricsFileError, default_keys, load_metrics, plot_runs, run_labels

__all__ = ["get_parser", "main"]


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output_dirs", nargs="+", metavar="OUTPUT_DIR",
                        help="run folder(s) holding metrics.json (or metrics.json paths)")
    parser.add_argument("--keys", nargs="+", default=None,
                        help="keys to plot (default: total_loss, lr and every evaluation key found)")
    parser.add_argument("--out", default="figures/curves.png", help="output PNG (default: %(default)s)")
    parser.add_argument("--smooth", type=int, default=1, metavar="N",
                        help="moving average over N logged points for training curves (default: 1 = raw)")
    parser.add_argument("--cols", type=int, default=3, help="subplots per row (default: %(default)s)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> str:
    """Draw the curves; returns the PNG's path."""
    args = get_parser().parse_args(argv)
    if args.smooth < 1:
        raise SystemExit(f"--smooth must be >= 1, got {args.smooth}")
    labels = run_labels(args.output_dirs)
    try:
        runs = OrderedDict((label, load_metrics(p)) for label, p in zip(labels, args.output_dirs))
        keys = args.keys if args.keys else default_keys(list(runs.values()))
        out = plot_runs(runs, keys, args.out, smooth_window=args.smooth, ncols=args.cols)
    except (MetricsFileError, ValueError) as e:
        raise SystemExit(f"plot_metrics: error: {e}")
    print(f"Wrote {out} ({len(keys)} plots: {', '.join(keys)})")
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
