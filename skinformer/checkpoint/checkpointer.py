"""fvcore's ``Checkpointer`` made crash-safe and ``weights_only``-safe.

* **Atomic writes**: a checkpoint is written to a temporary file in the same directory,
  flushed, fsync-ed and renamed over the target (``os.replace``); ``last_checkpoint`` is
  rewritten the same way only after that. A crash while writing leaves the previous
  checkpoint and pointer untouched.
* **Safe formats**: saved data is restricted to tensors, containers, numbers and strings
  (numpy arrays are turned into tensors) so every file loads with ``torch.load(weights_only=True)``.
* **Resume with fallback**: a corrupt/truncated file named by ``last_checkpoint`` is reported
  and the newest previous complete ``model_*.pth`` is used instead.
* **Foreign weights**: timm / torchvision / detectron2 files are mapped by suffix matching
  (see :mod:`skinformer.checkpoint.conversion`), with a table of what matched.
* Only the main process writes; every process can load. Paths/URLs go through iopath's
  ``PathManager`` (URLs are downloaded and cached).
"""
import contextlib
import errno
import logging
import os
import re
import shutil
import tempfile
from collections import OrderedDict
from typing import Any, Callable, Dict, List, Optional
from urllib.parse import urlparse

import numpy as np
import torch
from fvcore.common.checkpoint import Checkpointer

from skinformer.utils import comm
from skinformer.utils.file_io import PathManager

from .conversion import (
    CheckpointError,
    CorruptCheckpointError,
    IncompatibleCheckpointError,
    UnsafeCheckpointError,
    align_and_update_state_dicts,
    read_weights_file,
    unwrap_state_dict,
)

__all__ = ["DetectionCheckpointer", "atomic_torch_save", "make_weights_only_safe", "remove_stale_temporary_files",
           "strip_checkpoint", "CheckpointSaveError", "IncompatibleCheckpointError"]

# marks files written by skinformer: their keys are loaded exactly, never suffix-matched
_FORMAT_KEY = "__skinformer_format__"
_FORMAT_VERSION = 1
_LAST_CHECKPOINT = "last_checkpoint"


def _fsync_dir(directory: str) -> None:
    # make the rename itself durable; not possible on every OS / file system
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class CheckpointSaveError(OSError):
    """A checkpoint could not be written (e.g. the disk is full); the message names the file.
    The previous checkpoint and ``last_checkpoint`` are untouched."""


def _default_file_mode() -> int:
    # what open() would give a new file: 0o666 minus the process umask (mkstemp uses 0o600)
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _is_disk_full(exc: BaseException, directory: str) -> bool:
    seen = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno == errno.ENOSPC:
            return True
        seen = seen.__cause__ or seen.__context__
    # torch's zip writer sometimes reports a full disk only as "file write failed"
    with contextlib.suppress(OSError):
        return isinstance(exc, RuntimeError) and "write" in str(exc) and shutil.disk_usage(directory).free < 2**20
    return False


_TMP_NAME = re.compile(r"^\..+\.[A-Za-z0-9_]{6,}\.tmp$")


def remove_stale_temporary_files(directory: str) -> List[str]:
    """Delete the partial ``.<name>.<random>.tmp`` files that :func:`atomic_torch_save` leaves
    when the process is killed mid-write; returns the removed paths."""
    removed = []
    if not directory or not os.path.isdir(directory):
        return removed
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if _TMP_NAME.match(name) and os.path.isfile(path):
            with contextlib.suppress(OSError):
                os.remove(path)
                removed.append(path)
    if removed:
        logging.getLogger(__name__).warning(
            "Removed %d partial checkpoint file(s) left by an interrupted save: %s", len(removed), removed)
    return removed


def _atomic_write(path: str, write_fn: Callable[[Any], None], mode: str = "wb") -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, mode) as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _default_file_mode())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        if isinstance(e, Exception) and _is_disk_full(e, directory):
            raise CheckpointSaveError(
                errno.ENOSPC,
                f"Could not write '{path}': No space left on device. The partial file was removed; "
                f"the previous checkpoint is intact. Free space in '{directory}' (or choose another "
                "OUTPUT_DIR) and continue with --resume",
            ) from e
        raise
    _fsync_dir(directory)


def atomic_torch_save(obj: Any, path: str) -> None:
    """``torch.save`` to ``path`` via a temporary file + fsync + ``os.replace``."""
    _atomic_write(path, lambda f: torch.save(obj, f))


_SAFE_SCALARS = (str, int, float, bool, bytes, type(None), torch.dtype, torch.device, torch.Size)


def make_weights_only_safe(obj: Any, where: str = "checkpoint") -> Any:
    """Return ``obj`` with numpy arrays/scalars turned into tensors/numbers; raise ``TypeError``
    naming the entry for anything ``torch.load(weights_only=True)`` could not read back."""
    if isinstance(obj, torch.Tensor) or isinstance(obj, _SAFE_SCALARS):
        return obj
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        out = OrderedDict() if isinstance(obj, OrderedDict) else {}
        for k, v in obj.items():
            out[k] = make_weights_only_safe(v, f"{where}.{k}")
        if hasattr(obj, "_metadata"):  # nn.Module.state_dict() version info
            out._metadata = obj._metadata
        return out
    if isinstance(obj, (list, tuple)):
        converted = [make_weights_only_safe(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        return converted if isinstance(obj, list) else tuple(converted)
    raise TypeError(
        f"'{where}' has type {type(obj).__module__}.{type(obj).__qualname__}, which "
        "torch.load(weights_only=True) cannot read. state_dict() methods must return tensors, "
        "containers, numbers and strings only."
    )


_ITER_FILE = re.compile(r"^model_(\d+)\.pth$")


class DetectionCheckpointer(Checkpointer):
    """fvcore ``Checkpointer`` with atomic saves, weights_only loading, resume fallback and
    suffix matching for foreign weights.

    Args:
        model: the model (DDP / DataParallel wrappers are unwrapped).
        save_dir: where checkpoints and ``last_checkpoint`` live (``OUTPUT_DIR``).
        save_to_disk: default: only on the main process.
        checkpointables: other objects with ``state_dict`` / ``load_state_dict`` (``trainer=...``).
    """

    def __init__(self, model: torch.nn.Module, save_dir: str = "", *, save_to_disk: Optional[bool] = None,
                 **checkpointables: Any):
        if save_to_disk is None:
            save_to_disk = comm.is_main_process()
        super().__init__(model, save_dir, save_to_disk=save_to_disk, **checkpointables)
        self.logger = logging.getLogger(__name__)
        self.path_manager = PathManager

    # -- saving ----------------------------------------------------------------------------
    def save(self, name: str, *, tag_last_checkpoint: bool = True, **kwargs: Any) -> None:
        """Atomically write ``<save_dir>/<name>.pth`` with the model, every checkpointable and
        ``kwargs``; then (if ``tag_last_checkpoint``) point ``last_checkpoint`` at it."""
        if not self.save_dir or not self.save_to_disk:
            return
        data: Dict[str, Any] = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
        data[_FORMAT_KEY] = _FORMAT_VERSION
        data = make_weights_only_safe(data)
        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        self.logger.info("Saving checkpoint to %s", save_file)
        atomic_torch_save(data, save_file)
        if tag_last_checkpoint:
            self.tag_last_checkpoint(basename)

    def save_weights(self, name: str, **kwargs: Any) -> None:
        """Atomically write ``<save_dir>/<name>.pth`` with the model weights only (plus small
        ``kwargs`` such as ``iteration``): the file users keep and share. It cannot be resumed
        from; ``last_checkpoint`` is not changed."""
        if not self.save_dir or not self.save_to_disk:
            return
        save_file = os.path.join(self.save_dir, f"{name}.pth")
        self.logger.info("Saving model weights (no optimizer / trainer state) to %s", save_file)
        atomic_torch_save(_weights_only_data(self.model.state_dict(), kwargs), save_file)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        """Point ``last_checkpoint`` (what ``--resume`` reads) at ``last_filename_basename``,
        written atomically so an interrupted run never leaves it half-written."""
        path = os.path.join(self.save_dir, _LAST_CHECKPOINT)
        _atomic_write(path, lambda f: f.write(last_filename_basename), mode="w")

    # -- loading ---------------------------------------------------------------------------
    def _resolve_path(self, path: str, source: Optional[str]) -> str:
        """Local file for ``path`` (URLs are downloaded); FileNotFoundError naming ``source``."""
        # "?matching_heuristics=True" is an option, not part of the file name
        path = urlparse(path)._replace(query="").geturl() if "://" in path else path.split("?")[0]
        if os.path.isfile(path):
            return path
        what = f"{source} = '{path}'" if source else f"Checkpoint '{path}'"
        if "://" not in path:
            raise FileNotFoundError(f"{what}: file not found (cwd: {os.getcwd()}).")
        try:
            local = self.path_manager.get_local_path(path)
        except Exception as e:  # network or handler errors
            raise FileNotFoundError(f"{what}: could not be fetched ({type(e).__name__}: {e}).") from e
        if not os.path.isfile(local):
            raise FileNotFoundError(f"{what}: could not be fetched (got '{local}').")
        return local

    def load(self, path: str, checkpointables: Optional[List[str]] = None, *,
             source: Optional[str] = None, strict: bool = False) -> Dict[str, Any]:
        """Load ``path`` (local file or URL). ``checkpointables=None`` loads all of them; ``[]``
        only the model. ``source`` names where the path came from (e.g. ``"MODEL.WEIGHTS"``)
        for error messages. ``strict``: model weights missing from the file or of another shape
        raise :class:`IncompatibleCheckpointError` (listing them) before anything else is
        restored; otherwise they are a warning with the same list.
        Returns the unconsumed extra data (e.g. ``{"iteration": ...}``)."""
        if not path:
            self.logger.info("No checkpoint given: the model keeps its initialisation.")
            return {}
        heuristics = "matching_heuristics=True" in path
        local = self._resolve_path(path, source)
        self.logger.info("[Checkpointer] Loading from %s ...", path)
        checkpoint = self._load_file(local)
        if heuristics:
            checkpoint["matching_heuristics"] = True
        incompatible = self._load_model(checkpoint)
        if incompatible is not None:
            self._check_incompatible(incompatible, path, source, strict)
        restored = []
        for key in self.checkpointables if checkpointables is None else checkpointables:
            if key in checkpoint:
                self.checkpointables[key].load_state_dict(checkpoint.pop(key))
                restored.append(key)
        if restored:
            self.logger.info("Restored from %s: model, %s", path, ", ".join(restored))
        checkpoint.pop(_FORMAT_KEY, None)
        checkpoint.pop("matching_heuristics", None)
        return checkpoint

    def _load_file(self, f: str) -> Dict[str, Any]:
        loaded = read_weights_file(f)
        if isinstance(loaded, dict) and loaded.get(_FORMAT_KEY) is not None:
            return loaded  # our own format: exact keys
        state = unwrap_state_dict(loaded, f)
        own_keys = set(self.model.state_dict().keys())
        # foreign file: exact keys if they all belong to the model, else suffix matching
        exact = all(k in own_keys or k.startswith("module.") and k[7:] in own_keys for k in state)
        extra = {}
        if isinstance(loaded, dict) and "model" in loaded and isinstance(loaded["model"], dict):
            extra = {k: v for k, v in loaded.items() if k not in ("model", "__author__", "matching_heuristics")
                     and k not in self.checkpointables}
        flagged = isinstance(loaded, dict) and bool(loaded.get("matching_heuristics", False))
        return {"model": state, "matching_heuristics": flagged or not exact, **extra}

    def _check_incompatible(self, incompatible, path: str, source: Optional[str], strict: bool) -> None:
        """Raise (``strict``) or warn once, with every missing / shape-skipped key listed."""
        # fvcore drops shape-mismatched keys before loading, so they also come back as missing
        skipped = {k for k, _, _ in incompatible.incorrect_shapes}
        missing = [k for k in incompatible.missing_keys if k not in skipped]
        shapes = [f"{k} (file {tuple(a)}, model {tuple(b)})" for k, a, b in incompatible.incorrect_shapes]
        unexpected = list(incompatible.unexpected_keys)
        if not missing and not shapes:
            if unexpected:
                self.logger.warning("'%s': %d weights in the file are not used by the model: %s", path,
                                    len(unexpected), _listing(unexpected))
            return
        n_model = len(self.model.state_dict())
        what = f"{source} = '{path}'" if source else f"Checkpoint '{path}'"
        msg = (
            f"{what} does not fit the model: {len(missing) + len(shapes)} of {n_model} model weights would "
            f"stay randomly initialised.\n  missing from the file ({len(missing)}): {_listing(missing)}"
            f"\n  other shape in the file, skipped ({len(shapes)}): {_listing(shapes)}"
            f"\n  in the file but not in the model ({len(unexpected)}): {_listing(unexpected)}"
        )
        if strict:
            raise IncompatibleCheckpointError(
                msg + "\nIs it a checkpoint of another architecture or config? If partial loading is "
                "intended (fine-tuning), set MODEL.ALLOW_PARTIAL_WEIGHTS True."
            )
        self.logger.warning("%s\nPartial loading is allowed here: training starts from these weights.", msg)

    def _load_model(self, checkpoint: Dict[str, Any]):
        if checkpoint.get("matching_heuristics", False):
            # keys skipped here for their shape are reported as missing by the exact load below
            checkpoint["model"] = align_and_update_state_dicts(self.model.state_dict(), checkpoint["model"])
        incompatible = super()._load_model(checkpoint)
        # normalisation constants are buffers models may add; their absence is expected
        missing = [k for k in incompatible.missing_keys if k not in ("pixel_mean", "pixel_std")]
        return incompatible._replace(missing_keys=missing)

    # -- resuming --------------------------------------------------------------------------
    def _previous_checkpoints(self, exclude: str) -> List[str]:
        """Complete candidates to fall back on, newest first: ``model_<iter>.pth`` by decreasing
        iteration (``model_final.pth`` holds weights only and cannot be resumed from)."""
        if not self.save_dir or not os.path.isdir(self.save_dir):
            return []
        found = []
        for name in os.listdir(self.save_dir):
            m = _ITER_FILE.match(name)
            order = int(m.group(1)) if m else None
            path = os.path.join(self.save_dir, name)
            if order is not None and os.path.abspath(path) != os.path.abspath(exclude):
                found.append((order, path))
        return [p for _, p in sorted(found, reverse=True)]

    def resume_or_load(self, path: str, *, resume: bool = True, source: Optional[str] = "MODEL.WEIGHTS",
                       strict_weights: bool = False, allow_partial: bool = False) -> Dict[str, Any]:
        """If ``resume`` and ``last_checkpoint`` exists, restore everything from it (falling
        back to the newest previous complete checkpoint if it is unreadable); otherwise load
        only the model from ``path``.

        A resumed checkpoint must fit the model exactly; ``path`` only if ``strict_weights``
        (evaluation), else a partial fit is a warning (fine-tuning). ``allow_partial``
        (``MODEL.ALLOW_PARTIAL_WEIGHTS``) turns both checks into warnings."""
        strict_resume = not allow_partial
        if resume and self.has_checkpoint():
            last = self.get_checkpoint_file()
            try:
                return self.load(last, strict=strict_resume)
            except (CorruptCheckpointError, FileNotFoundError) as e:
                self.logger.error("Cannot resume from '%s' (named in %s): %s", last,
                                  os.path.join(self.save_dir, _LAST_CHECKPOINT), e)
            for candidate in self._previous_checkpoints(exclude=last):
                try:
                    out = self.load(candidate, strict=strict_resume)
                except CorruptCheckpointError as e:
                    self.logger.error("Previous checkpoint '%s' is unreadable too: %s", candidate, e)
                    continue
                self.logger.warning("Resumed from the previous complete checkpoint '%s' instead of '%s'.",
                                    candidate, last)
                return out
            raise CorruptCheckpointError(
                f"--resume: '{last}' (from last_checkpoint) is unreadable and no other complete "
                f"model_*.pth exists in '{self.save_dir}'. Remove '{self.save_dir}/last_checkpoint' "
                "to start from MODEL.WEIGHTS instead."
            )
        if resume:
            self.logger.info("--resume given but no %s in '%s': starting from %s", _LAST_CHECKPOINT,
                             self.save_dir, f"'{path}'" if path else "scratch")
        return self.load(path, checkpointables=[], source=source, strict=strict_weights and not allow_partial)


def _listing(items: List[str], limit: int = 12) -> str:
    if not items:
        return "none"
    return ", ".join(items[:limit]) + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def _weights_only_data(state: Dict[str, Any], extra: Dict[str, Any]) -> Dict[str, Any]:
    data = {"model": state, **extra, _FORMAT_KEY: _FORMAT_VERSION}
    return make_weights_only_safe(data)


def strip_checkpoint(src: str, dst: str) -> Dict[str, int]:
    """Write the model weights of checkpoint ``src`` (any file :func:`read_weights_file`
    reads) to ``dst`` without optimizer, scheduler, data-loader, RNG or hook state.

    skinformer files keep their exact-key format (and ``iteration``); foreign files keep
    their key names so they are still suffix-matched on load. Returns
    ``{"src_bytes", "dst_bytes", "num_weights"}``.
    """
    if os.path.abspath(src) == os.path.abspath(dst):
        raise ValueError(f"strip_checkpoint: output '{dst}' is the input; write to another file.")
    if not os.path.isfile(src):
        raise FileNotFoundError(f"Checkpoint '{src}' does not exist.")
    loaded = read_weights_file(src)
    state = unwrap_state_dict(loaded, src)
    if isinstance(loaded, dict) and loaded.get(_FORMAT_KEY) is not None:
        extra = {k: loaded[k] for k in ("iteration",) if k in loaded}
        data = _weights_only_data(state, extra)
    else:
        data = make_weights_only_safe({"model": state})
    atomic_torch_save(data, dst)
    return {"src_bytes": os.path.getsize(src), "dst_bytes": os.path.getsize(dst), "num_weights": len(state)}


__all__ += ["CheckpointError", "CorruptCheckpointError", "UnsafeCheckpointError"]
