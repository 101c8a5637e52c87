"""Where the op sources live, how they are compiled, and the opt-in install-time build.

Nothing here imports torch at module import time, so ``setup.py`` can import this file cheaply;
``build_extensions()`` imports torch and must only be called when ``SKINFORMER_BUILD_OPS=1``.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

__all__ = [
    "KINDS",
    "SOURCES",
    "HEADERS",
    "EXTENSION_NAMES",
    "PREBUILT_MODULES",
    "sources_root",
    "cache_root",
    "cxx_flags",
    "ld_flags",
    "host_isa_flags",
    "nvcc_flags",
    "build_extensions",
]

#: The two kernels, each a separate extension module.
KINDS = ("cpu", "cuda")

#: Sources of each extension, relative to :func:`sources_root` (``skinformer/ops``).
SOURCES = {
    "cpu": ("csrc/bindings.cpp", "csrc/cpu/ms_deform_attn_cpu.cpp"),
    "cuda": ("csrc/bindings_cuda.cpp", "csrc/cuda/ms_deform_attn_cuda.cu"),
}
HEADERS = ("csrc/ms_deform_attn.h",)

#: Base names of the extension modules (JIT builds append a hash of their sources).
EXTENSION_NAMES = {"cpu": "_C_msda_cpu", "cuda": "_C_msda_cuda"}

#: Modules built at install time (``SKINFORMER_BUILD_OPS=1 pip install .``).
PREBUILT_MODULES = {kind: f"skinformer.{name}" for kind, name in EXTENSION_NAMES.items()}

SOURCES_ENV = "SKINFORMER_OPS_SOURCES"
CACHE_ENV = "SKINFORMER_OPS_CACHE"


def sources_root() -> Path:
    """The directory holding ``csrc/``: this package directory, ``skinformer/ops``.

    The sources ship inside the package (``package_data`` of ``setup.py``), so a checkout, an
    editable install and an installed wheel all find them here. ``$SKINFORMER_OPS_SOURCES``
    overrides it with another directory holding ``csrc/``.
    """
    override = os.environ.get(SOURCES_ENV)
    if override:
        return Path(override).expanduser().resolve()
    return Path(__file__).resolve().parent


def cache_root() -> Path:
    """Root of the JIT build cache: ``$SKINFORMER_OPS_CACHE`` or ``~/.cache/skinformer/ops``."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser()
    return Path.home() / ".cache" / "skinformer" / "ops"


def cxx_flags() -> List[str]:
    """Host compiler flags of both extensions (OpenMP drives ``at::parallel_for``)."""
    flags = ["-O3"]
    if sys.platform.startswith("linux"):
        flags.append("-fopenmp")
    return flags


def host_isa_flags() -> List[str]:
    """Vector ISA flags for a JIT build on this very machine (AVX2+FMA, else SSE4.1, else none).

    Used only for JIT builds, whose cache key includes the flags, so a cache shared by different
    machines never hands one a binary it cannot run. Install-time builds stay portable.
    """
    if not (sys.platform.startswith("linux") and os.uname().machine in ("x86_64", "AMD64")):
        return []
    if os.environ.get("SKINFORMER_OPS_PORTABLE", "0") == "1":
        return []
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    cpu_flags = set(line.split(":", 1)[-1].split())
    if {"avx2", "fma"} <= cpu_flags:
        return ["-mavx2", "-mfma"]
    if "sse4_1" in cpu_flags:
        return ["-msse4.1"]
    return []


def ld_flags() -> List[str]:
    """Linker flags of the C++ kernel (OpenMP on Linux)."""
    return ["-fopenmp"] if sys.platform.startswith("linux") else []


def nvcc_flags() -> List[str]:
    """nvcc flags on top of torch's defaults (which disable the implicit half conversions)."""
    return ["-O3", "-lineinfo"]


def _cuda_build_possible() -> bool:
    import torch
    from torch.utils.cpp_extension import CUDA_HOME

    if CUDA_HOME is None or torch.version.cuda is None:
        return False
    return torch.cuda.is_available() or os.environ.get("FORCE_CUDA", "0") == "1"


def build_extensions(root: Optional[os.PathLike] = None) -> Tuple[List[Any], Dict[str, Any]]:
    """setuptools arguments for building the kernels at install time.

    Call this from ``setup.py`` only when ``SKINFORMER_BUILD_OPS=1`` (it imports torch)::

        if os.environ.get("SKINFORMER_BUILD_OPS") == "1":
            ext_modules, cmdclass = build_extensions()

    Args:
        root: directory of ``setup.py`` (source paths are made relative to it, as setuptools
            wants); defaults to the directory above the ``skinformer`` package.

    Returns:
        ``(ext_modules, cmdclass)`` for ``setup()``; cmdclass is
        ``{"build_ext": BuildExtension}``. The CPU
        extension ``skinformer._C_msda_cpu`` is always included; the CUDA extension
        ``skinformer._C_msda_cuda`` only when a CUDA toolkit and a CUDA build of torch are
        present and a GPU is visible (or ``FORCE_CUDA=1``). ``TORCH_CUDA_ARCH_LIST`` selects
        the architectures (default: the visible GPUs').
    """
    from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension

    ops = sources_root()
    root_dir = Path(root).resolve() if root is not None else Path(__file__).resolve().parents[2]
    missing = [s for kind in KINDS for s in SOURCES[kind] if not (ops / s).is_file()]
    if missing:
        raise FileNotFoundError(f"op sources not found under {ops}: {missing}")

    def rel(source: str) -> str:
        return os.path.relpath(ops / source, root_dir)

    include = [str(ops / "csrc")]
    ext_modules = [
        CppExtension(
            PREBUILT_MODULES["cpu"],
            sources=[rel(s) for s in SOURCES["cpu"]],
            include_dirs=include,
            extra_compile_args={"cxx": cxx_flags()},
            extra_link_args=ld_flags(),
        )
    ]
    if _cuda_build_possible():
        ext_modules.append(
            CUDAExtension(
                PREBUILT_MODULES["cuda"],
                sources=[rel(s) for s in SOURCES["cuda"]],
                include_dirs=include,
                extra_compile_args={"cxx": ["-O3"], "nvcc": nvcc_flags()},
            )
        )
    return ext_modules, {"build_ext": BuildExtension}
