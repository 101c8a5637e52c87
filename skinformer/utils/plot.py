"""Figures: training curves, dataset class distribution and statistics, prediction grids.

Everything writes a PNG with the headless Agg backend and returns its path. ``tools/plot.py``
(:mod:`skinformer.cli.plot`) is the command line (one sub-command per figure);
``tools/plot_metrics.py`` (:mod:`skinformer.cli.plot_metrics`) draws the multi-key curve grids below.

Training curves read a run's ``metrics.json`` (lines written by
``skinformer.utils.events.JSONWriter``: ``{"iteration": i, <key>: value}``). Evaluation results are
flattened ``task/metric`` keys present only on the lines of the iterations they were computed
at. A resumed run appends to the same file and may repeat iterations: the value written last wins.
"""
import json
import math
import os
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence

import matplotlib

matplotlib.use("Agg")  # headless: never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = [
    "MetricsFileError", "load_metrics", "metrics_file", "run_labels", "default_keys", "smooth", "is_eval_key",
    "plot_runs", "plot_train_val", "run_config_name", "class_distribution", "plot_class_distribution", "plot_dataset_statistics",
    "plot_prediction_grid",
]

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




def _save(fig, out: str, dpi: int = 110) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=dpi)
    plt.close(fig)
    return out


# ---------------------------------------------------------------------------------------------
# Training curves: train and validation on one axis
# ---------------------------------------------------------------------------------------------
# metric names drawn by default by :func:`plot_train_val` (when a run logged any of them)
HEADLINE_METRICS = ("dice", "jaccard", "threshold_jaccard", "mIoU", "mDice", "mean_dice", "AP")


def run_config_name(run_dir: str) -> Optional[str]:
    """Name (without folder and extension) of the config file a training run was started with, read
    from the ``Contents of args.config_file=...`` line that ``default_setup`` writes to the run's
    ``log.txt``; ``None`` without a log or such a line."""
    log = os.path.join(run_dir, "log.txt")
    if os.path.isfile(log):
        with open(log, encoding="utf-8", errors="replace") as f:
            for line in f:
                if "Contents of args.config_file=" in line:
                    name = line.split("Contents of args.config_file=", 1)[1].split(":", 1)[0]
                    return os.path.splitext(os.path.basename(name.strip()))[0]
    return None


def plot_train_val(run_dir: str, out: str, title: Optional[str] = None, train_key: str = "total_loss",
                   val_keys: Optional[Sequence[str]] = None, smooth_window: int = 1) -> str:
    """One axis per run: the (smoothed) training loss on the left scale and the validation
    metrics (``val_keys``; default the :data:`HEADLINE_METRICS` logged, else every ``task/metric``
    key) on the right scale of the same axis,
    titled with the config name (``title``, default the run folder's name)."""
    series = load_metrics(run_dir)
    if train_key not in series:
        raise ValueError(f"'{train_key}' is not in {metrics_file(run_dir)}; keys found: {sorted(series)}")
    if not val_keys:
        evals = sorted(k for k in series if is_eval_key(k))
        # a dozen overlapping score curves hide each other: the headline metrics when present
        val_keys = [k for k in evals if k.split("/")[-1] in HEADLINE_METRICS] or evals
    missing = [k for k in val_keys if k not in series]
    if missing:
        raise ValueError(f"validation keys {missing} are not in {metrics_file(run_dir)}; keys found: {sorted(series)}")
    fig, ax = plt.subplots(figsize=(7.0, 4.0))
    its, vals = list(series[train_key]), list(series[train_key].values())
    lines = ax.plot(its, smooth(vals, smooth_window), color="tab:blue", label=f"train {train_key}")
    ax.set_xlabel("iteration")
    ax.set_ylabel(f"train {train_key}")
    ax.grid(True, alpha=0.3)
    if val_keys:
        right = ax.twinx()  # losses and scores have different ranges; one x axis keeps them aligned
        colors = plt.rcParams["axes.prop_cycle"].by_key()["color"][1:]
        for i, key in enumerate(val_keys):
            lines += right.plot(list(series[key]), list(series[key].values()), marker="o", markersize=3.5,
                                color=colors[i % len(colors)], label=f"val {key}")
        right.set_ylabel("validation")
    ax.legend(lines, [ln.get_label() for ln in lines], fontsize=8, loc="best")
    folder = run_dir if os.path.isdir(run_dir) else os.path.dirname(os.path.abspath(run_dir))
    ax.set_title(title or os.path.basename(os.path.abspath(folder)))
    fig.tight_layout()
    return _save(fig, out)


# ---------------------------------------------------------------------------------------------
# Datasets
# ---------------------------------------------------------------------------------------------
def _ground_truth(record: Dict, metadata) -> np.ndarray:
    """``K×H×W`` bool class masks of a dataset record (semantic or multi-label)."""
    from skinformer.data.mask_io import decode_binary, read_mask_array, read_sem_seg
    from skinformer.utils.visualizer import label_map_to_masks

    k = len(metadata.get("classes", []))
    if "sem_seg_file_name" in record:
        return label_map_to_masks(read_sem_seg(record["sem_seg_file_name"], metadata), k)
    if "label_file_names" in record:
        return np.stack([decode_binary(read_mask_array(f), f) for f in record["label_file_names"]])
    raise ValueError(f"record '{record.get('file_name')}' has neither 'sem_seg_file_name' nor 'label_file_names'")


def class_distribution(dataset_name: str) -> Dict[str, np.ndarray]:
    """``{"classes", "pixels" (K), "images" (K: images containing the class), "total_pixels"}``."""
    from tqdm import tqdm

    from skinformer.data.catalog import DatasetCatalog, MetadataCatalog

    meta = MetadataCatalog.get(dataset_name)
    classes = list(meta.get("classes", []))
    pixels = np.zeros(len(classes), np.int64)
    images = np.zeros(len(classes), np.int64)
    total = 0
    for record in tqdm(DatasetCatalog.get(dataset_name), desc=f"class counts {dataset_name}", unit="img"):
        gt = _ground_truth(record, meta)
        counts = gt.reshape(len(classes), -1).sum(1)
        pixels += counts
        images += counts > 0
        total += int(np.prod(gt.shape[1:]))
    return {"classes": classes, "pixels": pixels, "images": images, "total_pixels": total}


def plot_class_distribution(dataset_names: Sequence[str], out: str, kind: str = "bar") -> str:
    """Pixels (percent of all pixels) and images per class for each split, as grouped bars or
    one pie per split (``kind`` ``"bar"`` | ``"pie"``)."""
    if kind not in ("bar", "pie"):
        raise ValueError(f"kind must be 'bar' or 'pie', got '{kind}'")
    stats = OrderedDict((n, class_distribution(n)) for n in dataset_names)
    classes = next(iter(stats.values()))["classes"]
    if kind == "bar":
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
        width = 0.8 / len(stats)
        x = np.arange(len(classes))
        for i, (name, s) in enumerate(stats.items()):
            axes[0].bar(x + i * width, 100.0 * s["pixels"] / max(s["total_pixels"], 1), width, label=name)
            axes[1].bar(x + i * width, s["images"], width, label=name)
        for ax, label in zip(axes, ("pixels (% of all pixels)", "images containing the class")):
            ax.set_xticks(x + width * (len(stats) - 1) / 2, classes, rotation=30, ha="right")
            ax.set_ylabel(label)
            ax.grid(True, axis="y", alpha=0.3)
            ax.legend(fontsize=8)
    else:
        fig, axes = plt.subplots(1, len(stats), figsize=(4.2 * len(stats), 4.0), squeeze=False)
        for ax, (name, s) in zip(axes[0], stats.items()):
            background = s["total_pixels"] - int(s["pixels"].sum())
            values = list(s["pixels"]) + ([background] if background > 0 else [])
            labels = list(classes) + (["(no class)"] if background > 0 else [])
            ax.pie(values, labels=labels, autopct="%1.1f%%", textprops={"fontsize": 8})
            ax.set_title(f"{name}: pixels per class", fontsize=10)
    fig.suptitle("class distribution")
    fig.tight_layout()
    return _save(fig, out)


def plot_dataset_statistics(dataset_names: Sequence[str], out: str, bins: int = 20) -> str:
    """Images per split (bars) and the histogram of image heights and widths over all splits."""
    from skinformer.data.catalog import DatasetCatalog
    from skinformer.data.datasets.coco import image_hw

    counts, heights, widths = [], [], []
    for name in dataset_names:
        records = DatasetCatalog.get(name)
        counts.append(len(records))
        for r in records:
            h, w = (r["height"], r["width"]) if "height" in r and "width" in r else image_hw(r["file_name"])
            heights.append(h)
            widths.append(w)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    bars = axes[0].bar(list(dataset_names), counts, color="tab:blue")
    axes[0].bar_label(bars)
    axes[0].set_ylabel("images")
    axes[0].set_title("images per split")
    axes[0].tick_params(axis="x", rotation=20)
    axes[1].hist([heights, widths], bins=bins, label=["height", "width"])
    axes[1].set_xlabel("pixels")
    axes[1].set_ylabel("images")
    axes[1].set_title(f"image sizes ({len(heights)} images)")
    axes[1].legend()
    fig.tight_layout()
    return _save(fig, out)


# ---------------------------------------------------------------------------------------------
# Predictions
# ---------------------------------------------------------------------------------------------
def plot_prediction_grid(predictor, dataset_name: str, indices: Sequence[int], out: str,
                         threshold: float = 0.5) -> str:
    """One row per chosen image of ``dataset_name``: the image, then per class its ground truth
    and the prediction of ``predictor`` (a :class:`DefaultPredictor`) at ``threshold``, with the
    per-image Dice in the title."""
    from skinformer.data.catalog import DatasetCatalog, MetadataCatalog
    from skinformer.data.mask_io import read_image
    from skinformer.utils.visualizer import Visualizer

    records = DatasetCatalog.get(dataset_name)
    meta = MetadataCatalog.get(dataset_name)
    classes = list(meta.get("classes", []))
    bad = [i for i in indices if not 0 <= i < len(records)]
    if bad:
        raise ValueError(f"indices {bad} are out of range for '{dataset_name}' ({len(records)} images)")
    vis = Visualizer(meta, multi_label=bool(meta.get("multi_label", False)), threshold=threshold)
    ncols = 1 + 2 * len(classes)
    fig, axes = plt.subplots(len(indices), ncols, figsize=(2.2 * ncols, 2.3 * len(indices)), squeeze=False)
    for row, i in zip(axes, indices):
        record = records[i]
        image = read_image(record["file_name"])
        fmt = predictor.cfg.INPUT.FORMAT
        output = predictor(image[:, :, ::-1].copy() if fmt == "BGR" else image)
        pred, _ = vis.prediction_masks(output, image.shape[:2])
        gt = _ground_truth(record, meta)
        row[0].imshow(image)
        row[0].set_title(os.path.basename(record["file_name"]), fontsize=7)
        for c, name in enumerate(classes):
            p = pred[c] if c < len(pred) else np.zeros(image.shape[:2], bool)
            dice = 2.0 * (p & gt[c]).sum() / max(int(p.sum() + gt[c].sum()), 1)
            row[1 + 2 * c].imshow(gt[c], cmap="gray", vmin=0, vmax=1)
            row[1 + 2 * c].set_title(f"GT {name}", fontsize=7)
            row[2 + 2 * c].imshow(p, cmap="gray", vmin=0, vmax=1)
            row[2 + 2 * c].set_title(f"pred {name} (Dice {dice:.3f})", fontsize=7)
        for ax in row:
            ax.axis("off")
    fig.suptitle(f"{dataset_name}: predictions at threshold {threshold:g}", fontsize=10)
    fig.tight_layout()
    return _save(fig, out)
