"""Training metrics: a context-managed :class:`EventStorage` and the writers that drain it.

The trainer opens one ``EventStorage`` for the whole run; any code running inside it (model,
hooks, evaluators) can call ``get_event_storage().put_scalar(...)``. Writers run periodically
(``PeriodicWriter`` hook) and read the storage:

* :class:`CommonMetricPrinter`: one log line with iteration, ETA, losses, lr, timings, memory;
* :class:`JSONWriter`: one JSON object per line in ``OUTPUT_DIR/metrics.json``;
* :class:`TensorboardXWriter`: TensorBoard event files (skipped with a log line if
  ``torch.utils.tensorboard`` cannot be imported).
"""
import datetime
import fnmatch
import json
import logging
import os
import time
from collections import defaultdict
from contextlib import contextmanager
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from fvcore.common.history_buffer import HistoryBuffer

from skinformer.utils.file_io import PathManager

__all__ = [
    "get_event_storage",
    "has_event_storage",
    "EventStorage",
    "EventWriter",
    "CommonMetricPrinter",
    "JSONWriter",
    "TensorboardXWriter",
]

_CURRENT_STORAGE_STACK: List["EventStorage"] = []


def get_event_storage() -> "EventStorage":
    """The innermost open :class:`EventStorage`. Raises if called outside ``with EventStorage()``."""
    if not _CURRENT_STORAGE_STACK:
        raise RuntimeError(
            "get_event_storage() has to be called inside a 'with EventStorage(...)' context "
            "(the trainer opens one for the whole training run)."
        )
    return _CURRENT_STORAGE_STACK[-1]


def has_event_storage() -> bool:
    """Whether an :class:`EventStorage` is active (inside ``with EventStorage():``)."""
    return bool(_CURRENT_STORAGE_STACK)


class EventStorage:
    """Scalars (with history), images and their iteration numbers, for the writers to read.

    ``iter`` is kept equal to the trainer's iteration by the trainer itself.
    """

    def __init__(self, start_iter: int = 0):
        self.start_iter = int(start_iter)
        self._history: Dict[str, HistoryBuffer] = defaultdict(HistoryBuffer)
        self._smoothing_hints: Dict[str, bool] = {}
        self._latest_scalars: Dict[str, Tuple[float, int]] = {}
        self._iter = start_iter
        self._current_prefix = ""
        self._vis_data: List[Tuple[str, np.ndarray, int]] = []

    # -- scalars ---------------------------------------------------------------------------
    def put_scalar(self, name: str, value, smoothing_hint: bool = True, cur_iter: Optional[int] = None) -> None:
        """Record ``value`` (a number or a 0-d tensor) under ``name`` at the current iteration.

        ``smoothing_hint`` tells writers whether a windowed median is meaningful for this
        scalar (losses: yes; evaluation results and lr: no).
        """
        name = self._current_prefix + name
        cur_iter = self._iter if cur_iter is None else cur_iter
        value = float(value.item() if isinstance(value, torch.Tensor) else value)
        self._history[name].update(value, cur_iter)
        self._latest_scalars[name] = (value, cur_iter)
        existing = self._smoothing_hints.get(name)
        if existing is not None and existing != smoothing_hint:
            raise ValueError(f"Scalar '{name}' was put with smoothing_hint={existing} before, now {smoothing_hint}")
        self._smoothing_hints[name] = smoothing_hint

    def put_scalars(self, *, smoothing_hint: bool = True, cur_iter: Optional[int] = None, **kwargs) -> None:
        """:meth:`put_scalar` for every ``name=value`` keyword, with one smoothing hint."""
        for k, v in kwargs.items():
            self.put_scalar(k, v, smoothing_hint=smoothing_hint, cur_iter=cur_iter)

    def put_image(self, img_name: str, img_tensor) -> None:
        """Queue an image (``C×H×W`` float in [0, 1] or uint8) for the TensorBoard writer."""
        if isinstance(img_tensor, torch.Tensor):
            img_tensor = img_tensor.detach().cpu().numpy()
        self._vis_data.append((img_name, np.asarray(img_tensor), self._iter))

    def clear_images(self) -> None:
        """Drop the queued images (the TensorBoard writer calls this after writing them)."""
        self._vis_data = []

    def history(self, name: str) -> HistoryBuffer:
        """Every ``(value, iteration)`` put under ``name``; ``KeyError`` when none was."""
        ret = self._history.get(name)
        if ret is None:
            raise KeyError(f"No history metric available for '{name}'")
        return ret

    def histories(self) -> Dict[str, HistoryBuffer]:
        """``name -> HistoryBuffer`` of every scalar (the live mapping, not a copy)."""
        return self._history

    def latest(self) -> Dict[str, Tuple[float, int]]:
        """``name -> (latest value, iteration it was put at)``."""
        return self._latest_scalars

    def latest_with_smoothing_hint(self, window_size: int = 20) -> Dict[str, Tuple[float, int]]:
        """Like :meth:`latest` but scalars with a smoothing hint are the median over ``window_size``."""
        result = {}
        for k, (v, itr) in self._latest_scalars.items():
            if self._smoothing_hints[k]:
                v = float(self._history[k].median(window_size))
            result[k] = (v, itr)
        return result

    def smoothing_hints(self) -> Dict[str, bool]:
        """``name -> smoothing_hint`` as each scalar was put."""
        return self._smoothing_hints

    def state_dict(self, max_length: int = 200) -> Dict:
        """The last ``max_length`` values of every smoothed scalar, for exact resume: without
        them the windowed medians after a resume would cover only the new iterations."""
        return {
            "history": {k: [[float(v), int(i)] for v, i in self._history[k].values()[-max_length:]]
                        for k, hint in self._smoothing_hints.items() if hint and k in self._history},
        }

    def load_state_dict(self, state: Dict) -> None:
        """Restore the histories saved by :meth:`state_dict` (their scalars are smoothed)."""
        for name, values in state.get("history", {}).items():
            buf = self._history[name]
            for v, i in values:
                buf.update(float(v), int(i))
            self._smoothing_hints[name] = True

    def step(self) -> None:
        """Deprecated-style explicit step; the trainer sets :attr:`iter` directly."""
        self._iter += 1

    @property
    def iter(self) -> int:
        """The iteration new scalars and images are recorded at (set by the trainer)."""
        return self._iter

    @iter.setter
    def iter(self, val: int) -> None:
        self._iter = int(val)

    @property
    def iteration(self) -> int:
        """Alias of :attr:`iter` (detectron2's spelling)."""
        return self._iter

    @property
    def vis_data(self):
        """Queued ``(name, image, iteration)`` triples, oldest first."""
        return self._vis_data

    @contextmanager
    def name_scope(self, name: str):
        """Prefix every scalar put inside this block with ``name/``."""
        old = self._current_prefix
        self._current_prefix = name.rstrip("/") + "/"
        try:
            yield
        finally:
            self._current_prefix = old

    def __enter__(self) -> "EventStorage":
        _CURRENT_STORAGE_STACK.append(self)
        return self

    def __exit__(self, exc_type, exc_val, exc_tb) -> None:
        assert _CURRENT_STORAGE_STACK[-1] is self
        _CURRENT_STORAGE_STACK.pop()


class EventWriter:
    """Base class of writers: ``write()`` reads the current storage; ``close()`` releases files."""

    def write(self) -> None:
        """Write what the current :class:`EventStorage` holds that this writer has not written."""
        raise NotImplementedError

    def close(self) -> None:
        """Flush and release files; the writer is not used afterwards."""


class JSONWriter(EventWriter):
    """Append one JSON object per logged iteration to ``json_file``.

    Each line holds ``{"iteration": i, <scalar>: value, ...}`` with every scalar put at ``i``
    since the previous write, so evaluation results land in the line of the iteration they were
    computed at. Smoothed scalars are the median over ``window_size``.

    A resumed run (storage ``start_iter`` > 0) first drops the rows at or past its start
    iteration, which the interrupted run wrote after its last checkpoint; with the restored
    smoothing window the file then equals that of an uninterrupted run.
    """

    def __init__(self, json_file: str, window_size: int = 20):
        self._json_file = json_file
        self._file_handle = None
        self._window_size = window_size
        self._last_write = -1

    def _open(self, start_iter: int) -> None:
        if start_iter > 0 and PathManager.exists(self._json_file):
            with PathManager.open(self._json_file, "r") as f:
                lines = f.readlines()
            kept = [l for l in lines if l.strip() and _row_iteration(l) < start_iter]
            if len(kept) != len(lines):
                tmp = self._json_file + ".truncating"
                with PathManager.open(tmp, "w") as f:
                    f.writelines(kept)
                os.replace(tmp, self._json_file)
                logging.getLogger(__name__).info(
                    "Resumed at iteration %d: dropped %d row(s) of %s written after the checkpoint",
                    start_iter, len(lines) - len(kept), self._json_file)
        self._file_handle = PathManager.open(self._json_file, "a")

    def write(self) -> None:
        """Append one line per iteration with scalars newer than the last write, then fsync."""
        storage = get_event_storage()
        if self._file_handle is None:
            self._open(getattr(storage, "start_iter", 0))
        to_save: Dict[int, Dict[str, float]] = defaultdict(dict)
        for k, (v, itr) in storage.latest_with_smoothing_hint(self._window_size).items():
            if itr <= self._last_write:  # already written
                continue
            to_save[itr][k] = v
        if not to_save:
            return
        self._last_write = max(to_save)
        for itr, scalars in sorted(to_save.items()):
            self._file_handle.write(json.dumps({"iteration": itr, **scalars}, sort_keys=True) + "\n")
        self._file_handle.flush()
        try:
            os.fsync(self._file_handle.fileno())
        except (AttributeError, OSError):  # not a local file
            pass

    def close(self) -> None:
        """Close the JSON file."""
        if self._file_handle is not None:
            self._file_handle.close()


def _row_iteration(line: str) -> int:
    try:
        return int(json.loads(line)["iteration"])
    except (ValueError, KeyError, TypeError):
        return -1  # a row that cannot be read is kept, not silently dropped


class TensorboardXWriter(EventWriter):
    """Write scalars and queued images to TensorBoard event files in ``log_dir``."""

    def __init__(self, log_dir: str, window_size: int = 20, **kwargs):
        self._window_size = window_size
        self._last_write = -1
        self._writer = None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:  # tensorboard is a soft dependency
            logging.getLogger(__name__).info(
                "TensorBoard logging disabled: torch.utils.tensorboard is not importable (%s). "
                "Install 'tensorboard' to enable it.", e,
            )
            return
        self._writer = SummaryWriter(log_dir, **kwargs)

    def write(self) -> None:
        """Add scalars newer than the last write and every queued image; a no-op without
        TensorBoard."""
        if self._writer is None:
            return
        storage = get_event_storage()
        new_last = self._last_write
        for k, (v, itr) in storage.latest_with_smoothing_hint(self._window_size).items():
            if itr > self._last_write:
                self._writer.add_scalar(k, v, itr)
                new_last = max(new_last, itr)
        self._last_write = new_last
        for img_name, img, step_num in storage.vis_data:
            self._writer.add_image(img_name, img, step_num)
        storage.clear_images()
        self._writer.flush()

    def close(self) -> None:
        """Close the event file."""
        if self._writer is not None:
            self._writer.close()


def _max_rss() -> str:
    """Peak resident memory of this process (CPU runs), or "" where it cannot be read."""
    try:
        import resource
    except ImportError:  # not on Windows
        return ""
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return f"max_rss: {kib / 1024:.0f}M"


def _format_eta(seconds: float) -> str:
    return str(datetime.timedelta(seconds=int(seconds)))


class CommonMetricPrinter(EventWriter):
    """Log ``eta``, ``iter``, ``total_loss`` and the loss terms selected by ``terms`` / ``skip``
    (fnmatch patterns; ``LOG.CONSOLE_TERMS`` / ``LOG.CONSOLE_SKIP``), ``time``, ``data_time``,
    ``lr`` and the peak memory (CUDA ``max_mem``, else the process's ``max_rss``) in one line.
    Only the console line is filtered: the other writers get every scalar.

    The ETA is ``median(iteration time over the last window) × iterations left``; before any
    timing is available it is extrapolated from the wall time between two writes.
    """

    def __init__(self, max_iter: Optional[int] = None, window_size: int = 20,
                 terms: Sequence[str] = ("*loss*",), skip: Sequence[str] = ()):
        self.logger = logging.getLogger("skinformer.utils.events")
        self._max_iter = max_iter
        self._window_size = window_size
        self._terms = tuple(terms)
        self._skip = tuple(skip)
        self._last_write: Optional[Tuple[int, float]] = None

    def shown_terms(self, names) -> List[str]:
        """``total_loss`` first, then the names matching ``terms`` and no ``skip`` pattern."""
        picked = [n for n in names if n != "total_loss" and "loss" in n
                  and any(fnmatch.fnmatchcase(n, p) for p in self._terms)
                  and not any(fnmatch.fnmatchcase(n, p) for p in self._skip)]
        return (["total_loss"] if "total_loss" in names else []) + sorted(picked)

    def _get_eta(self, storage: EventStorage) -> Optional[str]:
        if self._max_iter is None:
            return None
        iteration = storage.iter
        try:
            eta_seconds = storage.history("time").median(1000) * (self._max_iter - iteration - 1)
            storage.put_scalar("eta_seconds", eta_seconds, smoothing_hint=False)
            return _format_eta(eta_seconds)
        except KeyError:
            # no "time" history (e.g. IterationTimer not registered): extrapolate from writes
            eta = None
            if self._last_write is not None and iteration > self._last_write[0]:
                per_iter = (time.perf_counter() - self._last_write[1]) / (iteration - self._last_write[0])
                eta = _format_eta(per_iter * (self._max_iter - iteration - 1))
            self._last_write = (iteration, time.perf_counter())
            return eta

    def write(self) -> None:
        """Log one line: iteration, ETA, the shown loss terms, lr, time and memory (nothing after
        the last training iteration)."""
        storage = get_event_storage()
        iteration = storage.iter
        if self._max_iter is not None and iteration >= self._max_iter:
            # only training progress is reported; nothing after training succeeded
            return

        def _median(name: str) -> Optional[float]:
            try:
                return storage.history(name).median(self._window_size)
            except KeyError:
                return None

        data_time = _median("data_time")
        iter_time = _median("time")
        try:
            lr = "{:.5g}".format(storage.history("lr").latest())
        except KeyError:
            lr = "N/A"
        eta_string = self._get_eta(storage)
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            memory = f"max_mem: {torch.cuda.max_memory_allocated() / 2**20:.0f}M"
        else:
            memory = _max_rss()
        histories = storage.histories()
        losses = "  ".join(f"{k}: {histories[k].median(self._window_size):.4g}"
                           for k in self.shown_terms(list(histories)))
        self.logger.info(
            " {eta}iter: {iter}  {losses}  {time}{data_time}lr: {lr}  {memory}".format(
                eta=f"eta: {eta_string}  " if eta_string else "",
                iter=iteration,
                losses=losses,
                time=f"time: {iter_time:.4f}  " if iter_time is not None else "",
                data_time=f"data_time: {data_time:.4f}  " if data_time is not None else "",
                lr=lr,
                memory=memory,
            )
        )
