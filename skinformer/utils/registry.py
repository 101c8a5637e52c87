"""fvcore's ``Registry`` with one lookup error for every registry.

An unknown name is almost always a typo in a config value, so :meth:`Registry.get` takes the
config key the name came from and raises :class:`RegistryKeyError` naming that key, every
registered name and, when one is close, the nearest one. Every ``build_*`` goes through it,
so all registries report a wrong name the same way.
"""
import difflib
from typing import Any, List, Optional

from fvcore.common.registry import Registry as _FvRegistry

__all__ = ["Registry", "RegistryKeyError", "closest_name"]


class RegistryKeyError(KeyError):
    """A name that is not registered; the message names the config key and the known names."""

    def __str__(self):  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


def closest_name(name: str, candidates: List[str], cutoff: float = 0.6) -> Optional[str]:
    """The candidate most similar to ``name`` (case-insensitive), or ``None`` if none is close:
    a suggestion that is far off misleads more than it helps."""
    lowered = {c.lower(): c for c in candidates}
    match = difflib.get_close_matches(str(name).lower(), list(lowered), n=1, cutoff=cutoff)
    return lowered[match[0]] if match else None


class Registry(_FvRegistry):
    """``Registry(name)``; ``get(name, config_key="MODEL.BACKBONE.NAME")`` explains misses."""

    def names(self) -> List[str]:
        """Registered names, sorted."""
        return sorted(self._obj_map)

    def get(self, name: str, config_key: Optional[str] = None) -> Any:
        """The object registered as ``name``. ``config_key`` says where the name was read from
        (a config key, or e.g. "metadata 'mapper' of dataset 'x'") for the error message."""
        ret = self._obj_map.get(name)
        if ret is not None:
            return ret
        known = self.names()
        where = f"{config_key} = '{name}'" if config_key else f"'{name}'"
        near = closest_name(name, known)
        hint = f" Did you mean '{near}'?" if near else ""
        raise RegistryKeyError(
            f"{where} is not a registered {self._name.lower().replace('_', ' ')}.{hint} "
            f"Registered: {', '.join(known) if known else '(none)'}."
        )
