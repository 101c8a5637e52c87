"""Figures of datasets, predictions and training runs (logic in :mod:`skinformer.utils.plot`).

    python tools/plot.py curves output/run --title simaskformer_tiny_synthetic --out figures/train_val.png
    python tools/plot.py classes synthetic_lesion_train synthetic_lesion_val --kind pie --out figures/classes.png
    python tools/plot.py stats synthetic_lesion_train synthetic_lesion_val --out figures/stats.png
    python tools/plot.py predictions --config-file CFG --dataset synthetic_lesion_val --indices 0 1 2 \\
        --threshold 0.5 --out figures/predictions.png MODEL.WEIGHTS W

Dataset names are registered names (built-in, or folder datasets of ``--definitions`` YAML files).
"""
import argparse
import sys

from skinformer.utils import plot

__all__ = ["get_parser", "main"]


def _register(definitions):
    if definitions:
        from skinformer.data.datasets.folder import register_folder_datasets

        register_folder_datasets(definitions)


def _curves(args):
    # the config file a run was trained with is its most telling title
    return plot.plot_train_val(args.run, args.out, title=args.title or plot.run_config_name(args.run),
                               train_key=args.train_key, val_keys=args.val_keys, smooth_window=args.smooth)


def _classes(args):
    _register(args.definitions)
    return plot.plot_class_distribution(args.datasets, args.out, kind=args.kind)


def _stats(args):
    _register(args.definitions)
    return plot.plot_dataset_statistics(args.datasets, args.out, bins=args.bins)


def _predictions(args):
    from skinformer.engine import DefaultPredictor, setup_cfg

    cfg = setup_cfg(args)
    _register(list(cfg.DATASETS.DEFINITIONS))
    if not cfg.MODEL.WEIGHTS:
        raise SystemExit("plot.py predictions: error: MODEL.WEIGHTS is empty: pass the trained weights")
    dataset = args.dataset or (cfg.DATASETS.TEST[0] if cfg.DATASETS.TEST else None)
    if not dataset:
        raise SystemExit("plot.py predictions: error: give --dataset (the config has no DATASETS.TEST)")
    threshold = cfg.TEST.THRESHOLD if args.threshold is None else args.threshold
    return plot.plot_prediction_grid(DefaultPredictor(cfg), dataset, args.indices, args.out, threshold)


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("curves", help="training loss and validation metrics of a run on one axis")
    p.add_argument("run", help="OUTPUT_DIR of a training run (holding metrics.json)")
    p.add_argument("--title", help="title (default: the config file name from log.txt, else the folder name)")
    p.add_argument("--train-key", default="total_loss")
    p.add_argument("--val-keys", nargs="+", help="validation keys (default: every task/metric key)")
    p.add_argument("--smooth", type=int, default=1, help="moving average of the training curve")
    p.add_argument("--out", default="figures/train_val.png")
    p.set_defaults(func=_curves)

    for name, func, helptext in (("classes", _classes, "pixels and images per class per split"),
                                 ("stats", _stats, "images per split and image-size histogram")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("datasets", nargs="+", help="registered dataset names (one per split)")
        p.add_argument("--definitions", nargs="*", default=[], help="folder-dataset YAML files to register")
        p.add_argument("--out", default=f"figures/{name}.png")
        if name == "classes":
            p.add_argument("--kind", choices=["bar", "pie"], default="bar")
        else:
            p.add_argument("--bins", type=int, default=20)
        p.set_defaults(func=func)

    p = sub.add_parser("predictions", help="image / per-class ground truth / per-class prediction grid")
    p.add_argument("--config-file", required=True)
    p.add_argument("--dataset", help="registered dataset (default: DATASETS.TEST[0])")
    p.add_argument("--indices", type=int, nargs="+", default=[0, 1, 2, 3])
    p.add_argument("--threshold", type=float, default=None, help="decision threshold (default: TEST.THRESHOLD)")
    p.add_argument("--out", default="figures/predictions.png")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides (MODEL.WEIGHTS W)")
    p.set_defaults(func=_predictions)
    return parser


def main(argv=None):
    """Draw the figure of the sub-command; returns the PNG's path."""
    args = get_parser().parse_args(argv)
    try:
        out = args.func(args)
    except (ValueError, plot.MetricsFileError) as e:
        raise SystemExit(f"plot.py {args.command}: error: {e}")
    print(f"Wrote {out}")
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
