"""Compiled kernels of skinformer (multi-scale deformable attention) and their loader.

Nothing is compiled or loaded at import time. :func:`get_kernel` loads a kernel on first use:
the module prebuilt at install time if importable (``SKINFORMER_BUILD_OPS=1 pip install -e .``),
else a cached JIT build with ninja. ``python -m skinformer.ops`` diagnoses the toolchain.

Environment variables:
    SKINFORMER_OPS_CACHE: JIT build cache root (default ``~/.cache/skinformer/ops``).
    SKINFORMER_OPS_SOURCES: a directory holding ``csrc/`` (default: ``skinformer/ops`` itself).
    SKINFORMER_MSDA_BACKEND: default backend of
        :func:`skinformer.layers.multi_scale_deformable_attn` (auto | pytorch | cpu | cuda).
    SKINFORMER_BUILD_OPS: ``1`` builds the kernels at install time (see :func:`build_extensions`).
    SKINFORMER_OPS_PORTABLE: ``1`` JIT-builds the CPU kernel without the host's AVX2/FMA flags.
    TORCH_CUDA_ARCH_LIST: CUDA architectures to compile for (default: the visible GPUs').
"""
from .build import build_extensions, cache_root, sources_root
from .loader import (
    KernelStatus,
    KernelUnavailableError,
    get_kernel,
    kernel_status,
    load_kernel,
    reset,
)

__all__ = [
    "KernelStatus",
    "KernelUnavailableError",
    "build_extensions",
    "cache_root",
    "get_kernel",
    "kernel_status",
    "load_kernel",
    "reset",
    "sources_root",
]
