"""The table of built-in dataset names (layouts: ``datasets/README.md``, "Built-in datasets").

Importing this module only *declares* which function registers which names
(:func:`~skinformer.data.catalog.register_lazy_provider`). The first lookup of a name calls its
family's ``register_*`` with the root ``$SKINFORMER_DATASETS`` read at that moment, so the
registrations happen in every process (including those spawned by ``launch``) and follow the
environment of that process. Files are only read when a dataset's list is requested.

Folders under the root: ``isic2018/``, ``isic2017/``, ``isic2016/``, ``isic2017_part2/``, ``ph2/``,
``polypdb_ins/``, ``kvasir_seg/``, ``vofo/``, ``skin/``.
"""
from typing import Callable, Dict, List

from skinformer.data.catalog import datasets_root, register_lazy_provider

from . import isic, kvasir, ph2, polyp, skin, vofo

__all__ = ["BUILTIN_FAMILIES", "builtin_dataset_names", "register_builtin_providers"]

# family -> (register(root), names it registers)
BUILTIN_FAMILIES: Dict[str, tuple] = {
    "isic": (isic.register_all_isic, isic.builtin_names),
    "ph2": (ph2.register_ph2, ph2.builtin_names),
    "polypdb": (polyp.register_polypdb, polyp.builtin_names),
    "kvasir": (kvasir.register_kvasir, kvasir.builtin_names),
    "vofo": (vofo.register_vofo, vofo.builtin_names),
    "skin": (skin.register_skin, skin.builtin_names),
}


def _provider(register: Callable[[str], None]) -> Callable[[], None]:
    def provide() -> None:
        register(datasets_root())  # the root is read when a name is first used, not at import

    return provide


def builtin_dataset_names() -> List[str]:
    """Names of every built-in dataset, sorted (registered lazily: listing them reads no file)."""
    return sorted(n for _, names in BUILTIN_FAMILIES.values() for n in names())


def register_builtin_providers() -> None:
    """Register each built-in family as a lazy provider: its datasets are registered under the dataset root on first use."""
    for register, names in BUILTIN_FAMILIES.values():
        register_lazy_provider(names(), _provider(register))


register_builtin_providers()
