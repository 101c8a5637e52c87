"""Random seeding and environment helpers."""
import logging
import os
import random
from datetime import datetime

import numpy as np
import torch

__all__ = ["seed_all_rng", "get_rng_state", "set_rng_state", "resolve_device"]


def seed_all_rng(seed=None) -> int:
    """Seed python, numpy and torch RNGs. ``None`` or negative = a fresh seed (returned, logged)."""
    if seed is None or seed < 0:
        seed = (os.getpid() + int(datetime.now().strftime("%S%f")) + int.from_bytes(os.urandom(2), "big")) % (2**31)
        logging.getLogger(__name__).info("Using a generated random seed %d", seed)
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    return seed


def get_rng_state() -> dict:
    """Every RNG state that affects training, for exact resume."""
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore the Python, numpy, torch (and CUDA, when available) generators from :func:`get_rng_state`."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _available_devices() -> list:
    out = ["cpu"]
    if torch.cuda.is_available():
        out += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        out.append("mps")
    return out


def resolve_device(name: str, key: str = "MODEL.DEVICE") -> torch.device:
    """``torch.device(name)`` if that device exists here; otherwise ``ValueError`` naming ``key``,
    the devices this machine has and how to pick the CPU. Checked when the config is set up, so a
    wrong device fails before any data or model is built (not deep inside ``model.to``)."""
    available = _available_devices()
    how = f"Set {key} cpu (e.g. append '{key} cpu' to the command line)."
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(
            f"{key} = '{name}' is not a device name; this machine has: {', '.join(available)}. {how}"
        ) from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"{key} = '{name}', but CUDA is not available here (this machine has: "
                             f"{', '.join(available)}). {how}")
        if device.index is not None and device.index >= count:
            raise ValueError(f"{key} = '{name}', but only {count} CUDA device(s) exist "
                             f"(this machine has: {', '.join(available)}).")
    elif device.type != "cpu" and device.type not in available:
        raise ValueError(f"{key} = '{name}' is not available here (this machine has: {', '.join(available)}). {how}")
    return device
