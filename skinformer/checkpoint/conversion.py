"""Reading foreign weight files and mapping their keys onto a skinformer model.

Supported inputs (all read without executing arbitrary pickled code):

* torch ``.pth`` / ``.pt`` / ``.bin`` files: a raw state dict (timm, torchvision) or a wrapper
  ``{"model": ...}`` / ``{"state_dict": ...}`` / ``{"model_state": ...}`` (detectron2, Lightning,
  mmcv), read with ``torch.load(weights_only=True)``;
* ``.safetensors`` files (timm hub format);
* ``.pkl`` files of numpy arrays (detectron2 model-zoo R-50 ``{"model": {name: ndarray}}`` and
  Caffe2 ``{"blobs": ...}``), read with an unpickler that only allows numpy arrays.

Keys are mapped by longest-suffix matching (like detectron2's ``align_and_update_state_dicts``):
checkpoint key ``layer1.0.conv1.weight`` goes to the model key that ends with
``.layer1.0.conv1.weight``. When the checkpoint has no ``backbone`` keys and the model has, only
backbone keys are candidates, so a bare timm/torchvision classifier state dict lands in
``backbone.*`` and never in a head with the same local names.
"""
import logging
import pickle
from collections import OrderedDict
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np
import torch
from tabulate import tabulate

__all__ = [
    "CheckpointError",
    "CorruptCheckpointError",
    "UnsafeCheckpointError",
    "IncompatibleCheckpointError",
    "read_weights_file",
    "unwrap_state_dict",
    "align_and_update_state_dicts",
    "load_pretrained_backbone",
]

logger = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
    """A weights / checkpoint file that cannot be used (the message names the file)."""


class CorruptCheckpointError(CheckpointError):
    """The file exists but cannot be read: truncated, corrupt, or not a checkpoint at all."""


class UnsafeCheckpointError(CheckpointError):
    """The file holds Python objects that ``torch.load(weights_only=True)`` refuses."""


class IncompatibleCheckpointError(CheckpointError):
    """The file's model weights do not fit the model (missing keys or other shapes): loading it
    would leave part of the model randomly initialised."""


# ------------------------------------------------------------------------------------------
# Reading
# ------------------------------------------------------------------------------------------
class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler for detectron2/Caffe2 ``.pkl`` weights: numpy arrays and containers only."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("collections", "OrderedDict"),
        ("_codecs", "encode"),  # python-2 era pickles store byte strings through it
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed in a weights .pkl file")


def _read_pkl(path: str) -> Any:
    with open(path, "rb") as f:
        return _NumpyOnlyUnpickler(f, encoding="latin1").load()


def _read_safetensors(path: str) -> Any:
    try:
        from safetensors.torch import load_file
    except ImportError as e:
        raise CheckpointError(f"'{path}' is a .safetensors file; install 'safetensors' to read it") from e
    return load_file(path, device="cpu")


def _read_torch(path: str) -> Any:
    return torch.load(path, map_location="cpu", weights_only=True)


# suffix -> reader; anything else is read with torch.load
_READERS = {".pkl": _read_pkl, ".pickle": _read_pkl, ".safetensors": _read_safetensors}


def read_weights_file(path: str) -> Any:
    """Read a local weights/checkpoint file safely; raise a :class:`CheckpointError` naming it."""
    reader = next((r for suffix, r in _READERS.items() if path.endswith(suffix)), _read_torch)
    try:
        return reader(path)
    except CheckpointError:
        raise
    except pickle.UnpicklingError as e:
        # a refused class means "unsafe"; any other unpickling failure means "corrupt"
        if "Unsupported global" in str(e) or "is not allowed" in str(e):
            raise UnsafeCheckpointError(
                f"'{path}' contains Python objects other than tensors, containers, numbers and strings, "
                "so it is not loaded (weights_only=True). If you trust the file, re-save its state dict: "
                "torch.save(torch.load(path, weights_only=False)['model'], 'clean.pth')."
            ) from e
        raise CorruptCheckpointError(f"Checkpoint file '{path}' is corrupt or not a checkpoint: {e}") from e
    except FileNotFoundError:
        raise
    except Exception as e:  # torch.load reports truncation as RuntimeError / OSError / EOFError
        raise CorruptCheckpointError(
            f"Checkpoint file '{path}' is corrupt or truncated ({type(e).__name__}: {e})"
        ) from e


_WRAPPER_KEYS = ("model", "state_dict", "model_state", "model_state_dict", "net")


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(
        isinstance(v, (torch.Tensor, np.ndarray)) for v in obj.values()
    )


def unwrap_state_dict(obj: Any, path: str = "<weights>") -> Dict[str, Any]:
    """Find the ``name -> tensor/ndarray`` mapping inside a loaded weights object."""
    if _is_state_dict(obj):
        return dict(obj)
    if isinstance(obj, Mapping):
        if "blobs" in obj and isinstance(obj["blobs"], Mapping):  # Caffe2 / Detectron1
            return {k: v for k, v in obj["blobs"].items() if not k.endswith("_momentum")}
        for key in _WRAPPER_KEYS:
            if key in obj and isinstance(obj[key], Mapping):
                return unwrap_state_dict(obj[key], path)
    raise CheckpointError(
        f"'{path}' does not contain a state dict: expected name -> tensor pairs or a wrapper with one "
        f"of the keys {list(_WRAPPER_KEYS)}; top-level keys are "
        f"{sorted(map(str, obj.keys()))[:20] if isinstance(obj, Mapping) else type(obj).__name__}"
    )


# ------------------------------------------------------------------------------------------
# Key matching
# ------------------------------------------------------------------------------------------
def _shape(v) -> Tuple[int, ...]:
    return tuple(v.shape)


def _convert_foreign_layout(model_keys: List[str], ckpt: Mapping[str, Any]) -> Mapping[str, Any]:
    """Rename a checkpoint whose *layout* differs from the model's before suffix matching.

    A torchvision / timm ResNet (``conv1``, ``bn1``, ``layerX.Y.downsample``) loaded into the
    detectron2-layout ResNet (``stem.conv1``, ``resN.Y.shortcut``) cannot be matched by suffixes
    alone: the names differ, not only their prefixes.
    """
    keys = [k[len("module."):] if k.startswith("module.") else k for k in ckpt]
    torchvision_resnet = "conv1.weight" in keys and any(k.startswith("layer1.0.") for k in keys)
    d2_resnet_model = any(k.endswith("stem.conv1.weight") for k in model_keys)
    if torchvision_resnet and d2_resnet_model:
        from skinformer.modeling.backbone.resnet import convert_torchvision_resnet

        logger.info("Checkpoint has the torchvision ResNet layout: renaming it to the detectron2 layout")
        return convert_torchvision_resnet(dict(ckpt))
    return ckpt


def align_and_update_state_dicts(
    model_state_dict: Mapping[str, torch.Tensor],
    ckpt_state_dict: Mapping[str, Any],
    restrict_to: Optional[str] = "auto",
    log_table: bool = True,
) -> "OrderedDict[str, torch.Tensor]":
    """Rename checkpoint keys to model keys by longest-suffix matching.

    A checkpoint key ``c`` matches model key ``m`` when ``m == c`` or ``m`` ends with ``"." + c``;
    each model key takes its longest matching checkpoint key. Shape mismatches are reported and
    skipped; a checkpoint key claimed by two model keys is an error (ambiguous).

    Args:
        model_state_dict: the model's ``state_dict()``.
        ckpt_state_dict: foreign ``name -> tensor/ndarray``.
        restrict_to: a substring model keys must contain to be candidates; ``"auto"`` = ``"backbone"``
            when the model has backbone keys and the checkpoint has none; ``None`` = all keys.
    Returns:
        ``model key -> tensor`` for the matched keys (feed to ``load_state_dict(strict=False)``).
    """
    model_keys = sorted(model_state_dict.keys())
    ckpt_state_dict = _convert_foreign_layout(model_keys, ckpt_state_dict)
    if restrict_to == "auto":
        restrict_to = (
            "backbone"
            if any("backbone" in k for k in model_keys) and not any("backbone" in k for k in ckpt_state_dict)
            else None
        )
    candidates = [k for k in model_keys if restrict_to is None or restrict_to in k]

    result: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    matched_by: Dict[str, str] = {}  # ckpt key -> model key
    rows: List[Tuple[str, str, str]] = []
    mismatched: List[Tuple[str, str, Tuple, Tuple]] = []
    for mk in candidates:
        parts = mk.split(".")
        # suffixes at "." boundaries, longest first
        ck = next((s for s in (".".join(parts[i:]) for i in range(len(parts))) if s in ckpt_state_dict), None)
        if ck is None:
            continue
        value = ckpt_state_dict[ck]
        if _shape(value) != _shape(model_state_dict[mk]):
            mismatched.append((mk, ck, _shape(value), _shape(model_state_dict[mk])))
            continue
        if ck in matched_by:
            raise ValueError(
                f"Ambiguous weight matching: checkpoint key '{ck}' matches model keys '{matched_by[ck]}' "
                f"and '{mk}'. Rename the checkpoint keys (add the module prefix) to disambiguate."
            )
        matched_by[ck] = mk
        result[mk] = torch.as_tensor(value) if isinstance(value, np.ndarray) else value
        rows.append((mk, ck, str(_shape(value))))

    for mk, ck, shape_ckpt, shape_model in mismatched:
        logger.warning("Shape mismatch, not loaded: checkpoint '%s' %s -> model '%s' %s", ck, shape_ckpt, mk, shape_model)
    unused = sorted(set(ckpt_state_dict) - set(matched_by))
    if log_table:
        table = tabulate(rows, headers=["model key", "checkpoint key", "shape"], tablefmt="pipe")
        logger.info(
            "Matched %d of %d checkpoint keys onto %d candidate model keys%s:\n%s",
            len(rows), len(ckpt_state_dict), len(candidates),
            f" (containing '{restrict_to}')" if restrict_to else "", table,
        )
        if unused:
            logger.info("Checkpoint keys not used: %s", ", ".join(unused[:50]) + (" ..." if len(unused) > 50 else ""))
    return result


def load_pretrained_backbone(module: torch.nn.Module, path: str) -> Tuple[List[str], List[str]]:
    """Load a timm / torchvision / detectron2 weights file into ``module`` (e.g. a backbone) by
    suffix matching. Returns ``(missing model keys, unused checkpoint keys)``; both are logged.
    """
    from skinformer.utils.file_io import PathManager

    local = PathManager.get_local_path(path)
    ckpt = unwrap_state_dict(read_weights_file(local), path)
    own = module.state_dict()
    matched = align_and_update_state_dicts(own, ckpt, restrict_to=None)
    module.load_state_dict(matched, strict=False)
    missing = sorted(set(own) - set(matched))
    used = set()
    for mk in matched:
        parts = mk.split(".")
        used.add(next(s for s in (".".join(parts[i:]) for i in range(len(parts))) if s in ckpt))
    unused = sorted(set(ckpt) - used)
    if missing:
        logger.warning("Weights '%s': %d model keys not found in the file: %s", path, len(missing), missing[:20])
    return missing, unused
