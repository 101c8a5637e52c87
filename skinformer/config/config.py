"""yacs configuration with ``_BASE_`` inheritance, safe YAML and helpful errors.

``get_cfg()`` returns a copy of the defaults; model families extend the tree with
``add_<family>_config(cfg)``. Unknown keys (in files or command-line overrides) raise a
``KeyError`` that names the key and the closest known key.
"""
import functools
import inspect
import logging
import os
from typing import Any, Callable, Dict, List, Optional

import yaml
from fvcore.common.config import CfgNode as _FvCfgNode

from skinformer.utils.registry import closest_name

__all__ = ["CfgNode", "get_cfg", "configurable", "ConfigError"]

logger = logging.getLogger(__name__)


class ConfigError(KeyError):
    """A configuration key or value that does not exist or has the wrong type."""

    def __str__(self):  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


def _all_keys(node, prefix=""):
    out = []
    for k, v in node.items():
        full = f"{prefix}{k}"
        if isinstance(v, _FvCfgNode):
            out.extend(_all_keys(v, full + "."))
        else:
            out.append(full)
    return out


class CfgNode(_FvCfgNode):
    """A yacs ``CfgNode`` that

    * loads YAML with ``yaml.safe_load`` only (no Python tags),
    * resolves ``_BASE_`` relative to the including file,
    * reports unknown keys with the nearest known key, and the file they came from.
    """

    @classmethod
    def load_yaml_with_base(cls, filename: str, allow_unsafe: bool = False) -> Dict[str, Any]:
        """Load a YAML file with ``yaml.safe_load`` and recursively merge its ``_BASE_`` file(s) under it.

        ``_BASE_`` paths are relative to the including file; later bases and then the file itself win.
        ``allow_unsafe`` is ignored. Returns a plain nested dict.
        """
        if not os.path.isfile(filename):
            raise FileNotFoundError(f"Config file '{filename}' does not exist.{_similar_file_hint(filename)}")
        with open(filename, "rb") as f:
            raw = f.read()
        try:
            # a checkpoint or an image passed by mistake is not text: say so instead of a codec error
            if b"\x00" in raw:
                raise UnicodeDecodeError("utf-8", raw, raw.index(b"\x00"), raw.index(b"\x00") + 1, "NUL byte")
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(
                f"Config file '{filename}' is not a text YAML file (binary content at byte {e.start}); "
                "expected a YAML config such as configs/quickstart/per_pixel_r18_synthetic.yaml."
            ) from None
        try:
            cfg = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ValueError(f"Config file '{filename}' is not valid (safe) YAML: {e}") from e
        cfg = cfg or {}
        if not isinstance(cfg, dict):
            raise ValueError(f"Config file '{filename}' must contain a mapping at the top level, "
                             f"got {type(cfg).__name__}.")
        base = cfg.pop(cls.BASE_KEY, None) if hasattr(cls, "BASE_KEY") else cfg.pop("_BASE_", None)
        if base is None:
            return cfg
        bases = base if isinstance(base, (list, tuple)) else [base]
        merged: Dict[str, Any] = {}
        for b in bases:
            b = os.path.expanduser(b)
            if not os.path.isabs(b):
                b = os.path.join(os.path.dirname(filename), b)
            if not os.path.isfile(b):
                raise FileNotFoundError(
                    f"Config file '{b}' does not exist; it is the _BASE_ of '{filename}' "
                    f"(paths are relative to that file).{_similar_file_hint(b)}"
                )
            _deep_merge(merged, cls.load_yaml_with_base(b))
        _deep_merge(merged, cfg)
        return merged

    def merge_from_file(self, cfg_filename: str, allow_unsafe: bool = False) -> None:
        """Merge a YAML config file (with its ``_BASE_`` chain) into this config.

        Raises :class:`ConfigError` for a key this config lacks (naming the closest key) and ``ValueError`` naming the
        file for a value of the wrong type. ``allow_unsafe`` is ignored.
        """
        loaded = self.load_yaml_with_base(cfg_filename)
        loaded_cfg = type(self)(loaded)
        self._check_known(loaded_cfg, source=f"config file '{cfg_filename}'")
        try:
            self.merge_from_other_cfg(loaded_cfg)
        except ValueError as e:
            raise ValueError(f"In config file '{cfg_filename}': {e}") from e

    def merge_from_list(self, cfg_list: List[str]) -> "CfgNode":
        """Merge command-line overrides ``[KEY1, VALUE1, KEY2, VALUE2, ...]`` into this config.

        Raises ``ValueError`` for an odd number of items or a bad value and :class:`ConfigError` for an unknown key.
        """
        if len(cfg_list) % 2 != 0:
            raise ValueError(
                f"Command-line overrides must be KEY VALUE pairs, got an odd number of items: {cfg_list}"
            )
        for key in cfg_list[0::2]:
            self._check_key(key, source="command-line override")
        try:
            return super().merge_from_list(cfg_list)
        except ValueError as e:
            raise ValueError(f"Bad command-line override: {e}") from e

    # -- helpers -------------------------------------------------------------------------
    def _check_known(self, other: "CfgNode", source: str) -> None:
        for key in _all_keys(other):
            self._check_key(key, source)

    def _check_key(self, key: str, source: str) -> None:
        node = self
        parts = key.split(".")
        for i, part in enumerate(parts):
            if not isinstance(node, _FvCfgNode) or part not in node:
                if isinstance(node, _FvCfgNode) and i == len(parts) - 1 and node.is_new_allowed():
                    return
                near = closest_name(key, _all_keys(self), cutoff=0.8)
                hint = f" Did you mean '{near}'?" if near else ""
                raise ConfigError(f"Unknown config key '{key}' (from {source}).{hint}")
            node = node[part]

    def dump(self, *args, **kwargs) -> str:
        """Return the config as a YAML string (arguments are passed to the yacs/fvcore ``dump``)."""
        return super().dump(*args, **kwargs)


def _similar_file_hint(path: str) -> str:
    """" Did you mean 'x.yaml'?" for a close file name in the same folder, else ""."""
    folder = os.path.dirname(path) or "."
    if not os.path.isdir(folder):
        return f" (folder '{folder}' does not exist either)"
    near = closest_name(os.path.basename(path), [f for f in os.listdir(folder) if f.endswith((".yaml", ".yml"))],
                        cutoff=0.8)
    return f" Did you mean '{os.path.join(folder, near)}'?" if near else ""


def _deep_merge(dst: Dict[str, Any], src: Dict[str, Any]) -> None:
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _deep_merge(dst[k], v)
        else:
            dst[k] = v


def get_cfg() -> CfgNode:
    """Return a fresh copy of skinformer's default config (every model family's keys included)."""
    from .defaults import _C

    return _C.clone()


# ------------------------------------------------------------------------------------------
# @configurable
# ------------------------------------------------------------------------------------------
def configurable(init_func: Optional[Callable] = None, *, from_config: Optional[Callable] = None):
    """Let a class ``__init__`` (or a function) be called with plain arguments *or* a config.

    As a decorator on ``__init__`` the class must define ``@classmethod from_config(cls, cfg, ...)``
    returning a dict of keyword arguments. ``Module(cfg, extra=...)`` then calls
    ``Module(**from_config(cfg, ...), extra=...)``; ``Module(a=1, b=2)`` works unchanged.
    On a function, pass ``from_config=`` explicitly.
    """
    if init_func is not None:
        assert inspect.isfunction(init_func) and init_func.__name__ == "__init__", (
            "@configurable without arguments must decorate __init__"
        )

        @functools.wraps(init_func)
        def wrapped(self, *args, **kwargs):
            from_config_func = getattr(type(self), "from_config", None)
            if from_config_func is None:
                raise AttributeError(f"{type(self).__name__} uses @configurable but has no from_config")
            if _called_with_cfg(*args, **kwargs):
                explicit = _get_args_from_config(from_config_func, *args, **kwargs)
                init_func(self, **explicit)
            else:
                init_func(self, *args, **kwargs)

        return wrapped

    assert from_config is not None and inspect.isfunction(from_config), (
        "@configurable on a function needs from_config=<function>"
    )

    def wrapper(orig_func):
        @functools.wraps(orig_func)
        def wrapped(*args, **kwargs):
            if _called_with_cfg(*args, **kwargs):
                return orig_func(**_get_args_from_config(from_config, *args, **kwargs))
            return orig_func(*args, **kwargs)

        wrapped.from_config = from_config
        return wrapped

    return wrapper


def _called_with_cfg(*args, **kwargs) -> bool:
    if args and isinstance(args[0], _FvCfgNode):
        return True
    return isinstance(kwargs.get("cfg", None), _FvCfgNode)


def _get_args_from_config(from_config_func, *args, **kwargs) -> Dict[str, Any]:
    sig = inspect.signature(from_config_func)
    params = list(sig.parameters.keys())
    if not params or params[0] != "cfg":
        raise TypeError(f"{from_config_func.__qualname__} must take 'cfg' as its first argument")
    has_var_kw = any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values())
    if has_var_kw:
        return from_config_func(*args, **kwargs)
    supported = set(params)
    extra = {k: kwargs.pop(k) for k in list(kwargs) if k not in supported}
    ret = from_config_func(*args, **kwargs)
    ret.update(extra)
    return ret
