"""``python -m skinformer.ops``: diagnose the toolchain and check every MSDA backend.

Prints torch / CUDA / compiler / GPU information, builds (or loads) each kernel, runs a quick
parity check of its forward and gradients against the ``F.grid_sample`` reference, and says how
to fix what failed. Exit status 1 if a kernel that loaded gives wrong results.
"""
from __future__ import annotations

import argparse
import logging
import os
import platform
import shutil
import subprocess
import sys
from typing import List, Optional, Tuple

import torch

from . import build, loader


def _first_line(cmd: List[str]) -> Optional[str]:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else None


def _parity(kind: str, dtype: torch.dtype) -> Tuple[float, float]:
    """Max abs error (forward, gradients) of the kernel vs the reference on a small problem."""
    from skinformer.layers.ms_deform_attn_func import multi_scale_deformable_attn

    device = torch.device(kind)
    gen = torch.Generator().manual_seed(0)
    shapes = torch.tensor([[7, 5], [4, 3], [1, 1]])
    N, M, D, Lq, P = 2, 3, 33, 11, 4
    S, L = int((shapes[:, 0] * shapes[:, 1]).sum()), shapes.shape[0]
    starts = torch.cat([shapes.new_zeros(1), (shapes[:, 0] * shapes[:, 1]).cumsum(0)[:-1]])
    inputs = [
        torch.rand(N, S, M, D, generator=gen),
        torch.rand(N, Lq, M, L, P, 2, generator=gen) * 1.2 - 0.1,
        torch.rand(N, Lq, M, L, P, generator=gen),
    ]
    grad = torch.randn(N, Lq, M * D, generator=gen).to(device, dtype)
    results = []
    for backend in ("pytorch", kind):
        leaves = [t.to(device, dtype).clone().requires_grad_(True) for t in inputs]
        out = multi_scale_deformable_attn(leaves[0], shapes.to(device), starts.to(device),
                                          leaves[1], leaves[2], backend=backend)
        out.backward(grad)
        results.append((out.detach(), [t.grad for t in leaves]))
    forward_err = (results[0][0] - results[1][0]).abs().max().item()
    grad_err = max((a - b).abs().max().item() for a, b in zip(results[0][1], results[1][1]))
    return forward_err, grad_err


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m skinformer.ops", description=__doc__.split("\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log the build steps")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)

    print("skinformer ops diagnostics")
    print(f"  python        {sys.version.split()[0]} ({platform.platform()})")
    cuda_info = f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU-only build"
    print(f"  torch         {torch.__version__} ({cuda_info}), {torch.get_num_threads()} threads")
    cxx = loader.cxx_compiler()
    print(f"  C++ compiler  {cxx and (_first_line([cxx, '--version']) or cxx) or 'not found'}")
    ninja = shutil.which("ninja")
    print(f"  ninja         {ninja and _first_line([ninja, '--version']) or 'not found'}")
    from torch.utils.cpp_extension import CUDA_HOME

    nvcc = loader.nvcc_path()
    nvcc_text = f"nvcc {loader.nvcc_version(nvcc)} at {nvcc}" if nvcc else "no nvcc"
    print(f"  CUDA_HOME     {CUDA_HOME or 'not found'} ({nvcc_text})")
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            major, minor = torch.cuda.get_device_capability(i)
            print(f"  GPU {i}         {torch.cuda.get_device_name(i)} (sm_{major}{minor})")
        print(f"  arch list     TORCH_CUDA_ARCH_LIST="
              f"{os.environ.get('TORCH_CUDA_ARCH_LIST', '(unset: the GPUs above)')}; torch built "
              f"for {' '.join(torch.cuda.get_arch_list()) or '?'}")
    else:
        print("  GPU           none visible (torch.cuda.is_available() is False)")
    print(f"  sources       {build.sources_root()}")
    print(f"  cache         {build.cache_root()}")
    backend_env = os.environ.get("SKINFORMER_MSDA_BACKEND")
    if backend_env:
        print(f"  SKINFORMER_MSDA_BACKEND={backend_env}")

    print("\nbackends")
    print("  pytorch  ok (F.grid_sample reference, always available)")
    failed = False
    for kind in build.KINDS:
        status = loader.load_kernel(kind)
        for note in status.notes:
            print(f"  {kind:<8} note: {note}")
        if not status.available:
            print(f"  {kind:<8} unavailable: {status.reason}")
            if status.hint:
                print(f"           fix: {status.hint}")
            continue
        checks = [torch.float64, torch.float32] + ([torch.float16, torch.bfloat16] if kind == "cuda" else [])
        parts, ok = [], True
        for dtype in checks:
            tol = {torch.float64: 1e-10, torch.float32: 1e-4}.get(dtype, 5e-2)
            fwd, grad = _parity(kind, dtype)
            good = fwd <= tol and grad <= tol * 10
            ok &= good
            parts.append(f"{str(dtype).replace('torch.', '')} fwd {fwd:.1e} grad {grad:.1e}"
                         + ("" if good else " FAIL"))
        print(f"  {kind:<8} {'ok' if ok else 'WRONG RESULTS'} ({status.origin}); parity vs reference: "
              + "; ".join(parts))
        if not ok:
            failed = True
            print("           fix: delete the cache directory above and rebuild; if it persists, "
                  "report it with this output")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
