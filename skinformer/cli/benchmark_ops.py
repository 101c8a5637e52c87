"""Benchmark of the multi-scale deformable attention op (README "Benchmarks").

Times forward and forward+backward of every available backend against the ``F.grid_sample``
reference in the same run, at the encoder shapes (batch 1 at 512², batch 4 at 256²) and the
decoder shape (100 queries, 8 points, batch 4 at 256²). Prints medians and the speed-up over
the reference; on CUDA also float16 / bfloat16, peak memory and the half-precision error.

    python tools/benchmark_ops.py --device cpu --repeat 10
    python tools/benchmark_ops.py --device cuda --repeat 50
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable, Dict, List, Optional, Tuple

import torch

from skinformer.layers.ms_deform_attn_func import multi_scale_deformable_attn
from skinformer.ops import load_kernel

HEADS, HEAD_DIM = 8, 32

# name -> (batch, level shapes, number of queries (None = all positions), points)
CASES: Dict[str, Tuple[int, Tuple[Tuple[int, int], ...], Optional[int], int]] = {
    "encoder 512² b1": (1, ((64, 64), (32, 32), (16, 16)), None, 4),
    "encoder 256² b4": (4, ((32, 32), (16, 16), (8, 8)), None, 4),
    "decoder 256² b4": (4, ((32, 32), (16, 16), (8, 8)), 100, 8),
}


def make_inputs(case, device, dtype, seed=0):
    batch, shapes, queries, points = case
    gen = torch.Generator().manual_seed(seed)
    S = sum(h * w for h, w in shapes)
    Lq = S if queries is None else queries
    L = len(shapes)
    value = torch.randn(batch, S, HEADS, HEAD_DIM, generator=gen)
    # locations spread around reference points, a few falling outside the image
    loc = torch.rand(batch, Lq, 1, 1, 1, 2, generator=gen)
    loc = loc + 0.05 * torch.randn(batch, Lq, HEADS, L, points, 2, generator=gen)
    logits = torch.randn(batch, Lq, HEADS, L * points, generator=gen)
    weights = logits.softmax(-1).view(batch, Lq, HEADS, L, points)
    spatial = torch.tensor(shapes, dtype=torch.long)
    starts = torch.cat([spatial.new_zeros(1), (spatial[:, 0] * spatial[:, 1]).cumsum(0)[:-1]])
    # as in MSDeformAttn under autocast: value in the compute dtype, locations and weights float32
    return (value.to(device, dtype), spatial.to(device), starts.to(device), loc.to(device),
            weights.to(device))


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_it(fn: Callable[[], None], device, repeat: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    sync(device)
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        sync(device)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1e3


def bench(case, backend, device, dtype, repeat):
    value, spatial, starts, loc, weights = make_inputs(case, device, dtype)

    def fwd():
        with torch.no_grad():
            multi_scale_deformable_attn(value, spatial, starts, loc, weights, backend=backend)

    leaves = [t.detach().requires_grad_(True) for t in (value, loc, weights)]
    grad = torch.randn(value.shape[0], loc.shape[1], HEADS * HEAD_DIM, device=device, dtype=dtype)

    def fwd_bwd():
        for t in leaves:
            t.grad = None
        out = multi_scale_deformable_attn(leaves[0], spatial, starts, leaves[1], leaves[2],
                                          backend=backend)
        out.backward(grad)

    peak = None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fwd_bwd()
        sync(device)
        peak = (torch.cuda.max_memory_allocated(device) - base) / 2**20
    return time_it(fwd, device, repeat), time_it(fwd_bwd, device, repeat), peak


def half_error(case, device, dtype) -> float:
    """Max abs error of the kernel in ``dtype`` against the float32 kernel on the same rounded
    inputs, over the output and the three gradients."""
    results = []
    value, spatial, starts, loc, weights = make_inputs(case, device, dtype)
    for dt in (torch.float32, dtype):
        # float32 run on the same (rounded) values: this measures the kernel's arithmetic
        leaves = [t.detach().clone().requires_grad_(True) for t in (value.to(dt), loc, weights)]
        out = multi_scale_deformable_attn(leaves[0], spatial, starts, leaves[1], leaves[2],
                                          backend=device.type)
        grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(1)).to(device, dt)
        # the same gradient for both runs: the float one gets the rounded values too
        grad = grad.to(dtype).to(dt)
        out.backward(grad)
        results.append([out.float()] + [t.grad.float() for t in leaves])
    # error relative to each tensor's magnitude (when above 1): bfloat16 keeps 8 bits, so a value
    # of magnitude 4 cannot be stored closer than ~1e-2 whatever the kernel does
    return max((a - b).abs().max().item() / max(1.0, b.abs().max().item())
               for b, a in zip(*results))


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device available")
    if device.type == "cpu":
        torch.set_num_threads(args.threads)

    status = load_kernel(device.type)
    backends = ["pytorch"] + ([device.type] if status.available else [])
    print(f"torch {torch.__version__}, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else
             f", {torch.get_num_threads()} threads"))
    if not status.available:
        print(f"{device.type} kernel unavailable: {status.reason}")
    dtypes = [torch.float32]
    if device.type == "cuda":
        dtypes += [torch.float16, torch.bfloat16]

    header = f"{'case':<18} {'dtype':<9} {'backend':<8} {'fwd ms':>9} {'x ref':>7} {'fwd+bwd ms':>11} {'x ref':>7}"
    if device.type == "cuda":
        header += f" {'peak MiB':>9}"
    print(header)
    print("-" * len(header))
    for name, case in CASES.items():
        for dtype in dtypes:
            ref = None
            for backend in backends:
                fwd, both, peak = bench(case, backend, device, dtype, args.repeat)
                if ref is None:
                    ref = (fwd, both)
                line = (f"{name:<18} {str(dtype).replace('torch.', ''):<9} {backend:<8} "
                        f"{fwd:9.2f} {ref[0] / fwd:7.2f} {both:11.2f} {ref[1] / both:7.2f}")
                if peak is not None:
                    line += f" {peak:9.1f}"
                print(line, flush=True)
    if device.type == "cuda" and status.available:
        print("\nmax error of the CUDA kernel in half / bfloat16 vs float32 on the same inputs "
              "(output and gradients, abs error / max(1, max |float32 value|)):")
        for name, case in CASES.items():
            for dtype in (torch.float16, torch.bfloat16):
                print(f"  {name:<18} {str(dtype).replace('torch.', ''):<9} {half_error(case, device, dtype):.2e}")


if __name__ == "__main__":
    main()
