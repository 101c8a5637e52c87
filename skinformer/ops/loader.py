"""Lazy loading of the compiled multi-scale deformable attention kernels.

A kernel (``"cpu"`` or ``"cuda"``) is looked for on first use, in this order:

1. the module prebuilt at install time (``skinformer._C_msda_cpu`` / ``skinformer._C_msda_cuda``);
2. a JIT build with ninja (``torch.utils.cpp_extension.load``) of the sources under
   :func:`~skinformer.ops.build.sources_root`, cached in
   ``<cache_root>/<torch version>-<hash of sources, flags and toolchain>/<kind>``.

The outcome, success or the reason for failure, is remembered for the life of the process.
Only the build / load step catches errors; a working kernel's errors reach the caller.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Dict, List, Optional

from . import build

__all__ = [
    "KernelStatus",
    "KernelUnavailableError",
    "get_kernel",
    "load_kernel",
    "kernel_status",
    "reset",
    "cxx_compiler",
    "nvcc_path",
    "nvcc_version",
]

logger = logging.getLogger(__name__)

# Errors that mean "this kernel cannot be built or loaded here" (never used around kernel calls).
_LOAD_ERRORS = (RuntimeError, OSError, ImportError, subprocess.SubprocessError, ValueError)


class KernelUnavailableError(RuntimeError):
    """A compiled kernel was requested explicitly but cannot be had; the message says why."""


@dataclass
class KernelStatus:
    """Outcome of loading one kernel.

    Attributes:
        kind: ``"cpu"`` or ``"cuda"``.
        available: whether ``module`` is usable.
        reason: why it is unavailable (empty when available).
        hint: what to do about it, in plain words (empty when available).
        origin: where the module came from (``prebuilt skinformer._C_msda_cpu`` or the JIT build
            directory).
        module: the extension module (``forward``, ``backward``, ``device``) or None.
        notes: informational messages (e.g. a broken prebuilt module that was replaced by JIT).
    """

    kind: str
    available: bool
    reason: str = ""
    hint: str = ""
    origin: str = ""
    module: Optional[ModuleType] = field(default=None, repr=False)
    notes: List[str] = field(default_factory=list)


_lock = threading.RLock()
_cache: Dict[str, KernelStatus] = {}


def reset() -> None:
    """Forget every load outcome (tests use this after changing the environment)."""
    with _lock:
        _cache.clear()


def get_kernel(kind: str) -> ModuleType:
    """The compiled kernel module for ``kind``; raises :class:`KernelUnavailableError` with the
    reason and a hint if it cannot be built or loaded."""
    status = load_kernel(kind)
    if not status.available:
        raise KernelUnavailableError(
            f"the {kind} multi-scale deformable attention kernel is unavailable: {status.reason}"
            + (f" (fix: {status.hint})" if status.hint else "")
            + ". Run `python -m skinformer.ops` for a diagnosis."
        )
    return status.module


def load_kernel(kind: str) -> KernelStatus:
    """Load (building if needed) the ``kind`` kernel once per process; never raises for
    build or load failures, which are reported in the returned status."""
    if kind not in build.KINDS:
        raise ValueError(f"kernel kind must be one of {build.KINDS}, got {kind!r}")
    with _lock:
        status = _cache.get(kind)
        if status is None:
            status = _load(kind)
            _cache[kind] = status
        return status


def kernel_status(load: bool = False) -> Dict[str, KernelStatus]:
    """Status of every kernel. With ``load=False`` kernels not yet requested are reported as
    ``available=False, reason="not loaded yet"`` without building anything."""
    out = {}
    for kind in build.KINDS:
        if load:
            out[kind] = load_kernel(kind)
        else:
            with _lock:
                out[kind] = _cache.get(kind) or KernelStatus(kind, False, reason="not loaded yet")
    return out


# ---------------------------------------------------------------------------------------------
# toolchain probes (also used by `python -m skinformer.ops`)


def cxx_compiler() -> Optional[str]:
    """Path of the C++ compiler torch's extension builder will use (``$CXX`` or ``c++``)."""
    name = os.environ.get("CXX") or ("cl" if sys.platform == "win32" else "c++")
    return shutil.which(name)


def nvcc_path() -> Optional[str]:
    """nvcc of the CUDA toolkit torch's extension builder will use (``CUDA_HOME``)."""
    from torch.utils.cpp_extension import CUDA_HOME

    if CUDA_HOME is None:
        return None
    candidate = Path(CUDA_HOME) / "bin" / ("nvcc.exe" if sys.platform == "win32" else "nvcc")
    return str(candidate) if candidate.exists() else None


def nvcc_version(nvcc: Optional[str] = None) -> Optional[str]:
    """``"major.minor"`` of nvcc, or None."""
    nvcc = nvcc or nvcc_path()
    if nvcc is None:
        return None
    try:
        text = subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"release (\d+\.\d+)", text)
    return match.group(1) if match else None


def _cuda_arch_key() -> str:
    """The architectures a CUDA build targets (part of the cache key)."""
    env = os.environ.get("TORCH_CUDA_ARCH_LIST")
    if env:
        return env
    import torch

    caps = sorted({torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())})
    return ";".join(f"{major}.{minor}" for major, minor in caps)


# ---------------------------------------------------------------------------------------------
# loading


def _load(kind: str) -> KernelStatus:
    notes: List[str] = []
    prebuilt = _import_prebuilt(kind, notes)
    if prebuilt is not None:
        return prebuilt
    status = _jit_build(kind)
    status.notes = notes + status.notes
    return status


def _import_prebuilt(kind: str, notes: List[str]) -> Optional[KernelStatus]:
    name = build.PREBUILT_MODULES.get(kind)
    if not name:
        return None
    try:
        if importlib.util.find_spec(name) is None:
            return None
    except (ImportError, ValueError):
        return None
    if kind == "cuda":
        problem = _cuda_runtime_problem()
        if problem is not None:
            return KernelStatus(kind, False, reason=problem[0], hint=problem[1])
    try:
        module = importlib.import_module(name)
    except _LOAD_ERRORS as exc:
        notes.append(f"prebuilt {name} failed to load ({exc}); trying a JIT build")
        logger.warning("skinformer.ops: prebuilt %s failed to load (%s); trying a JIT build", name, exc)
        return None
    return KernelStatus(kind, True, origin=f"prebuilt {name}", module=module)


def _cuda_runtime_problem() -> Optional[tuple]:
    import torch

    if torch.version.cuda is None:
        return (
            f"torch {torch.__version__} is a CPU-only build",
            "install a CUDA build of torch (see pytorch.org for the pip command)",
        )
    if not torch.cuda.is_available():
        return (
            "no CUDA GPU is visible (torch.cuda.is_available() is False)",
            "run on a machine with an NVIDIA GPU and driver, and check CUDA_VISIBLE_DEVICES",
        )
    return None


def _build_key(kind: str, ops: Path, flags: List[str]) -> str:
    import torch

    digest = hashlib.sha256()
    for rel in build.SOURCES[kind] + build.HEADERS:
        digest.update(rel.encode())
        digest.update((ops / rel).read_bytes())
    parts = [kind, torch.__version__, sys.version.split()[0], platform.machine(), *flags]
    if kind == "cuda":
        parts += [str(torch.version.cuda), _cuda_arch_key(), str(nvcc_path())]
    else:
        parts.append(str(cxx_compiler()))
    digest.update("\0".join(parts).encode())
    return digest.hexdigest()[:16]


#: Typical one-off JIT build time of each kernel, announced before a build starts.
BUILD_DURATION = {"cpu": "1-2 minutes", "cuda": "3-5 minutes"}


def _stage_sources(kind: str, ops: Path, build_dir: Path) -> Path:
    """Copy the sources (and headers) of ``kind`` to ``build_dir/src`` (only files that differ),
    so the paths compiled are a function of the cache key alone. Returns that ``src`` directory."""
    src_dir = build_dir / "src"
    for rel in build.SOURCES[kind] + build.HEADERS:
        data = (ops / rel).read_bytes()
        dest = src_dir / rel
        if dest.is_file() and dest.read_bytes() == data:
            continue  # unchanged: keep the mtime so ninja sees nothing to do
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, dest)
    return src_dir


def _is_built(build_dir: Path, name: str) -> bool:
    return any((build_dir / f"{name}{ext}").is_file() for ext in (".so", ".pyd"))


def _first_error_lines(message: str, count: int = 6) -> str:
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    errors = [line for line in lines if re.search(r"error|fatal", line, re.IGNORECASE)]
    picked = (errors or lines)[:count]
    return " | ".join(picked)


def _jit_build(kind: str) -> KernelStatus:
    import torch

    ops = build.sources_root()
    sources = [ops / rel for rel in build.SOURCES[kind] + build.HEADERS]
    missing = [str(path) for path in sources if not path.is_file()]
    if missing:
        return KernelStatus(
            kind,
            False,
            reason=f"sources not found ({', '.join(missing)})",
            hint=f"reinstall skinformer (its op sources ship in the package, skinformer/ops/csrc), or "
            f"point {build.SOURCES_ENV} at a directory holding csrc/",
        )
    if cxx_compiler() is None:
        return KernelStatus(
            kind,
            False,
            reason=f"no C++ compiler found (looked for {os.environ.get('CXX') or 'c++'!r})",
            hint="install g++ (e.g. `apt-get install g++`) or clang, or set CXX to its path",
        )
    from torch.utils import cpp_extension

    if not cpp_extension.is_ninja_available():
        return KernelStatus(kind, False, reason="ninja is not installed", hint="pip install ninja")

    flags = build.cxx_flags() + build.host_isa_flags()
    extra = {"extra_cflags": flags, "extra_ldflags": build.ld_flags()}
    if kind == "cuda":
        problem = _cuda_runtime_problem()
        if problem is not None:
            return KernelStatus(kind, False, reason=problem[0], hint=problem[1])
        nvcc = nvcc_path()
        torch_cuda = torch.version.cuda
        if nvcc is None:
            return KernelStatus(
                kind,
                False,
                reason="no CUDA toolkit (nvcc) found",
                hint=f"install a CUDA toolkit matching torch's CUDA {torch_cuda} and set CUDA_HOME "
                "to its directory (the one containing bin/nvcc)",
            )
        found = nvcc_version(nvcc)
        if found is not None and found.split(".")[0] != torch_cuda.split(".")[0]:
            return KernelStatus(
                kind,
                False,
                reason=f"nvcc {found} ({nvcc}) does not match torch's CUDA {torch_cuda}",
                hint=f"install a CUDA toolkit {torch_cuda.split('.')[0]}.x matching torch's CUDA "
                f"{torch_cuda} and set CUDA_HOME, or install a torch built for CUDA {found}",
            )
        flags = ["-O3"]
        extra = {"extra_cflags": flags, "extra_cuda_cflags": build.nvcc_flags()}

    key = _build_key(kind, ops, flags + extra.get("extra_cuda_cflags", []))
    build_dir = build.cache_root() / f"{torch.__version__}-{key}" / kind
    name = f"{build.EXTENSION_NAMES[kind]}_{key[:8]}"
    try:
        build_dir.mkdir(parents=True, exist_ok=True)
        # torch's build files (build.ninja) hold absolute source paths: compile copies kept
        # inside the keyed directory, so every checkout or installed copy with the same sources
        # writes byte-identical build files and reuses the binary instead of rebuilding it.
        src_dir = _stage_sources(kind, ops, build_dir)
        if not _is_built(build_dir, name):
            logger.warning(
                "skinformer.ops: building the %s deformable-attention kernel once in %s; this takes "
                "about %s (later runs reuse it; set %s to share or move the cache)",
                kind, build_dir, BUILD_DURATION[kind], build.CACHE_ENV,
            )
        else:
            logger.info("skinformer.ops: loading the cached %s kernel from %s", kind, build_dir)
        module = cpp_extension.load(
            name=name,
            sources=[str(src_dir / rel) for rel in build.SOURCES[kind]],
            extra_include_paths=[str(src_dir / "csrc")],
            build_directory=str(build_dir),
            verbose=False,
            **extra,
        )
    except _LOAD_ERRORS as exc:
        first = _first_error_lines(str(exc))
        hint = "fix the compiler error above; delete the cache directory to force a clean rebuild"
        if kind == "cuda":
            hint = (
                "check that the CUDA toolkit matches torch's CUDA "
                f"{torch.version.cuda}, that CUDA_HOME points at it, and that TORCH_CUDA_ARCH_LIST "
                "names your GPU's architecture"
            )
        return KernelStatus(kind, False, reason=f"build failed in {build_dir}: {first}", hint=hint)
    return KernelStatus(kind, True, origin=f"jit {build_dir}", module=module)
