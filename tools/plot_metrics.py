#!/usr/bin/env python
"""Plot training and evaluation curves from one or more runs' ``metrics.json``.

    python tools/plot_metrics.py out/r50_isic out/swin_isic --out figures/curves.png
    python tools/plot_metrics.py out/x --keys total_loss loss_dice lr isic_task1/threshold_jaccard --smooth 20

Each OUTPUT_DIR (or a ``metrics.json`` path itself) holds the lines written by
``skinformer.utils.events.JSONWriter``: one JSON object per line, ``{"iteration": i, <key>: value}``.
Evaluation results are flattened ``task/metric`` keys (``isic_task1/threshold_jaccard``,
``sem_seg/mIoU``) present only on the lines of the iterations they were computed at. A resumed
run appends to the same file and may repeat iterations: the value written last wins.

Default keys: ``total_loss``, ``lr`` and every evaluation key (one containing ``/``) found in
any run. One subplot per key, one line per run labelled by its folder name.
"""
import argparse
import json
import math
import os
import sys
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence

import matplotlib

matplotlib.use("Agg")  # headless: never needs a display
import matplotlib.pyplot as plt  # noqa: E402

DEFAULT_TRAIN_KEYS = ("total_loss", "lr")
# keys that are bookkeeping rather than curves worth a default subplot
_NEVER_DEFAULT = ("iteration",)

Series = Dict[int, float]  # iteration -> value


class MetricsFileError(ValueError):
    """A metrics.json that is missing or cannot be parsed (the message names the file/line)."""


def is_eval_key(key: str) -> bool:
    """Evaluation results are flattened ``task/metric`` keys (see ``EvalHook``)."""
    return "/" in key


def metrics_file(path: str) -> str:
    """``path`` is a run folder (→ ``path/metrics.json``) or a metrics.json file itself."""
    return path if os.path.isfile(path) else os.path.join(path, "metrics.json")


def load_metrics(path: str) -> Dict[str, Series]:
    """Read a run's metrics.json.

    Args:
        path: run folder or metrics.json file.
    Returns:
        {key: {iteration: value}} with iterations in increasing order. For an iteration that
        appears on several lines (a resumed run re-logs iterations after its last checkpoint)
        each key keeps the value of the last line that has it.
    Raises:
        MetricsFileError: missing file, a line that is not a JSON object, or a line without an
            integer "iteration"; the message names the file and the 1-based line number.
    """
    file = metrics_file(path)
    if not os.path.isfile(file):
        raise MetricsFileError(
            f"No metrics file: '{file}' does not exist. Expected an OUTPUT_DIR of "
            "tools/train_net.py (containing metrics.json) or the path of a metrics.json."
        )
    series: Dict[str, Series] = {}
    with open(file, "r", encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            line = line.strip()
            if not line:  # trailing newline / blank separator
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise MetricsFileError(
                    f"{file}:{lineno}: malformed line (not valid JSON: {e.msg} at column {e.colno}): "
                    f"{_clip(line)!r}"
                ) from None
            if not isinstance(record, dict):
                raise MetricsFileError(
                    f"{file}:{lineno}: expected a JSON object per line, got "
                    f"{type(record).__name__}: {_clip(line)!r}"
                )
            itr = record.get("iteration")
            if (isinstance(itr, bool) or not isinstance(itr, (int, float)) or not math.isfinite(itr)
                    or float(itr) != int(itr)):
                raise MetricsFileError(
                    f"{file}:{lineno}: expected an integer \"iteration\" key, got {itr!r}: {_clip(line)!r}"
                )
            itr = int(itr)
            for key, value in record.items():
                # only numeric scalars are curves (bool is an int subclass: not a metric)
                if key in _NEVER_DEFAULT or isinstance(value, bool) or not isinstance(value, (int, float)):
                    continue
                series.setdefault(key, {})[itr] = float(value)
    return {k: dict(sorted(v.items())) for k, v in series.items()}


def _clip(text: str, n: int = 120) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def run_labels(paths: Sequence[str]) -> List[str]:
    """Folder name of each run; runs that share it are told apart by more of their paths."""
    dirs = [os.path.dirname(os.path.abspath(p)) if os.path.isfile(p) else os.path.abspath(p) for p in paths]
    parts = [d.rstrip(os.sep).split(os.sep) for d in dirs]
    depth = [1] * len(parts)
    while True:
        labels = ["/".join(p[-d:]) for p, d in zip(parts, depth)]
        clashing = [i for i, lab in enumerate(labels)
                    if labels.count(lab) > 1 and depth[i] < len(parts[i])]
        if not clashing:
            return labels
        for i in clashing:
            depth[i] += 1


def default_keys(runs: Sequence[Dict[str, Series]]) -> List[str]:
    """total_loss and lr (if logged) followed by every evaluation key found, sorted."""
    found = set().union(*[set(r) for r in runs]) if runs else set()
    keys = [k for k in DEFAULT_TRAIN_KEYS if k in found]
    keys += sorted(k for k in found if is_eval_key(k))
    return keys


def smooth(values: Sequence[float], window: int) -> List[float]:
    """Trailing moving average over ``window`` points (window <= 1: unchanged); NaN-aware."""
    if window <= 1:
        return list(values)
    out, buf = [], []
    for v in values:
        buf.append(v)
        if len(buf) > window:
            buf.pop(0)
        finite = [x for x in buf if math.isfinite(x)]
        out.append(sum(finite) / len(finite) if finite else float("nan"))
    return out


def plot_runs(runs: "OrderedDict[str, Dict[str, Series]]", keys: Sequence[str], out: str,
              smooth_window: int = 1, ncols: int = 3, dpi: int = 110) -> str:
    """Draw one subplot per key with one line per run and save a PNG.

    Args:
        runs: {label: load_metrics(...)} in legend order.
        keys: keys to plot; each must exist in at least one run.
        out: PNG path (parent folders are created).
        smooth_window: moving-average window for training curves (losses etc.); evaluation
            keys and ``lr`` are drawn raw since they are sparse / piecewise by design.
    Returns:
        ``out``.
    """
    if not keys:
        available = sorted(set().union(*[set(r) for r in runs.values()]))
        raise ValueError(f"Nothing to plot: no keys selected. Keys found in the runs: {available}")
    for key in keys:
        if not any(key in r for r in runs.values()):
            available = sorted(set().union(*[set(r) for r in runs.values()]))
            raise ValueError(f"Key '{key}' is in none of the runs' metrics.json. Keys found: {available}")

    ncols = max(1, min(ncols, len(keys)))
    nrows = math.ceil(len(keys) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.3 * nrows), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, key in zip(axes.flat, keys):
        evaluation = is_eval_key(key)
        positive = True
        for i, (label, series) in enumerate(runs.items()):
            if key not in series:
                continue
            its = list(series[key].keys())
            vals = list(series[key].values())
            positive &= all(v > 0 for v in vals if math.isfinite(v))
            if not evaluation and key != "lr":
                vals = smooth(vals, smooth_window)
            ax.plot(its, vals, label=label, color=colors[i % len(colors)], linewidth=1.4,
                    marker="o" if evaluation or len(its) == 1 else None, markersize=3.5)
        ax.set_title(key + (f" (smoothed {smooth_window})" if smooth_window > 1 and not evaluation
                            and key != "lr" else ""), fontsize=10)
        ax.set_xlabel("iteration", fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(True, alpha=0.3)
        if key == "lr" and positive:
            # warm-up and step decays span orders of magnitude
            ax.set_yscale("log")
        if len(runs) > 1:
            ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.tight_layout()
    parent = os.path.dirname(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    plt.close(fig)
    return out


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
