"""A table of the environment (versions, devices, op build) for logs and bug reports.

Run ``python -m skinformer.utils.collect_env`` to print it.
"""
import importlib
import os
import platform
import sys
from typing import List, Tuple

import numpy as np
import torch
from tabulate import tabulate

from skinformer.ops import kernel_status

__all__ = ["collect_env_info"]

_PACKAGES = ("torchvision", "timm", "fvcore", "iopath", "pycocotools", "cv2", "scipy", "PIL", "tensorboard")


def _version(name: str) -> str:
    try:
        mod = importlib.import_module(name)
    except Exception as e:  # a broken install should be reported, not crash the report
        return f"not importable ({type(e).__name__})"
    return str(getattr(mod, "__version__", "unknown"))


def _op_status() -> str:
    # what is known without compiling anything (load=False never builds or raises)
    statuses = kernel_status(load=False)
    parts = []
    for kind, st in statuses.items():
        parts.append(f"{kind}: " + (f"loaded ({st.origin})" if st.available else st.reason or "unavailable"))
    return "; ".join(parts) + " (pure-PyTorch fallback always available)"


def collect_env_info() -> str:
    """Return a two-column table of environment facts."""
    import skinformer

    rows: List[Tuple[str, str]] = [
        ("sys.platform", sys.platform),
        ("Python", sys.version.replace("\n", " ")),
        ("machine", platform.machine()),
        ("CPU cores", str(os.cpu_count())),
        ("numpy", np.__version__),
        ("skinformer", f"{skinformer.__version__} @ {os.path.dirname(skinformer.__file__)}"),
        ("MSDeformAttn op", _op_status()),
        ("PyTorch", f"{torch.__version__} @ {os.path.dirname(torch.__file__)}"),
        ("PyTorch debug build", str(torch.version.debug)),
        ("torch threads", str(torch.get_num_threads())),
        ("CUDA available", str(torch.cuda.is_available())),
    ]
    if torch.cuda.is_available():
        rows.append(("CUDA (torch built with)", str(torch.version.cuda)))
        rows.append(("cuDNN", str(torch.backends.cudnn.version())))
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            rows.append((f"GPU {i}", f"{props.name} (cc {props.major}.{props.minor}, "
                                     f"{props.total_memory / 1024 ** 3:.1f} GiB)"))
        rows.append(("CUDA_VISIBLE_DEVICES", os.environ.get("CUDA_VISIBLE_DEVICES", "<not set>")))
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        rows.append(("MPS available", "True"))
    for name in _PACKAGES:
        rows.append((name, _version(name)))
    rows.append(("SKINFORMER_DATASETS", os.environ.get("SKINFORMER_DATASETS", "<not set: ./datasets>")))
    return tabulate(rows, tablefmt="simple")


if __name__ == "__main__":
    print(collect_env_info())
