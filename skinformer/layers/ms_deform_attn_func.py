"""Multi-scale deformable attention (Deformable-DETR) as a function, with backend dispatch.

Backends:
    ``pytorch``: the ``F.grid_sample`` reference, :func:`multi_scale_deformable_attn_pytorch`.
    ``cpu``: the C++ kernel (``at::parallel_for``; float32, float64, float16, bfloat16).
    ``cuda``: the CUDA kernel (float32, float64, float16, bfloat16 with float accumulation).
    ``auto``: the kernel of the tensors' device when it can be had, else the reference with one
        warning that says why. ``$SKINFORMER_MSDA_BACKEND`` replaces ``auto`` when set.

Dtypes and autocast: the output has ``value``'s dtype. For half / bfloat16 ``value`` the
sampling locations and attention weights are consumed in float32 (their gradients are returned
in their own dtypes), so locations keep full precision. Under ``torch.autocast`` the op is not
cast by autocast: it runs in the dtype ``value`` arrives in (half / bfloat16 when it comes from
an autocast ``nn.Linear``), exactly as above; the reference computes half / bfloat16 in float32.
"""
from __future__ import annotations

import logging
import os
import warnings
from typing import Optional, Sequence, Set, Tuple, Union

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

__all__ = [
    "BACKENDS",
    "BACKEND_ENV",
    "MSDAFallbackWarning",
    "multi_scale_deformable_attn",
    "multi_scale_deformable_attn_pytorch",
]

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "pytorch", "cpu", "cuda")
BACKEND_ENV = "SKINFORMER_MSDA_BACKEND"

ShapesLike = Union[torch.Tensor, Sequence[Sequence[int]]]


class MSDAFallbackWarning(UserWarning):
    """``backend="auto"`` fell back to the PyTorch reference because a kernel is unavailable."""


_warned: Set[str] = set()


def _as_shapes(spatial_shapes: ShapesLike, device: torch.device) -> torch.Tensor:
    if not isinstance(spatial_shapes, torch.Tensor):
        spatial_shapes = torch.as_tensor(spatial_shapes, dtype=torch.long)
    if spatial_shapes.dtype.is_floating_point or spatial_shapes.dtype.is_complex:
        raise ValueError(f"spatial_shapes must be an integer tensor, got {spatial_shapes.dtype}")
    return spatial_shapes.to(device=device, dtype=torch.long)


def _check_inputs(
    value: torch.Tensor,
    spatial_shapes: ShapesLike,
    level_start_index: Optional[torch.Tensor],
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> Tuple[torch.Tensor, torch.Tensor, Tuple[Tuple[int, int], ...]]:
    """Validate the arguments; returns (spatial_shapes, level_start_index) as int64 tensors on
    value's device and the level shapes as Python ints."""
    for name, tensor in (("value", value), ("sampling_locations", sampling_locations),
                         ("attention_weights", attention_weights)):
        if not isinstance(tensor, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
        if not tensor.dtype.is_floating_point:
            raise ValueError(f"{name} must be a floating-point tensor, got {tensor.dtype}")
    if value.dim() != 4:
        raise ValueError(
            "value must have shape N x S x M x D (batch, flattened positions of all levels, heads, "
            f"channels per head), got {tuple(value.shape)}"
        )
    N, S, M, _ = value.shape
    device = value.device
    shapes = _as_shapes(spatial_shapes, device)
    if shapes.dim() != 2 or shapes.shape[1] != 2:
        raise ValueError(f"spatial_shapes must have shape L x 2 (H, W per level), got {tuple(shapes.shape)}")
    L = shapes.shape[0]
    if sampling_locations.dim() != 6 or (
        sampling_locations.shape[0], sampling_locations.shape[2], sampling_locations.shape[3],
        sampling_locations.shape[5]) != (N, M, L, 2):
        raise ValueError(
            f"sampling_locations must have shape N x Lq x M x L x P x 2 = ({N}, Lq, {M}, {L}, P, 2), "
            f"got {tuple(sampling_locations.shape)}"
        )
    expected = tuple(sampling_locations.shape[:5])
    if tuple(attention_weights.shape) != expected:
        raise ValueError(
            f"attention_weights must have shape N x Lq x M x L x P = {expected}, "
            f"got {tuple(attention_weights.shape)}"
        )
    for name, tensor in (("sampling_locations", sampling_locations),
                         ("attention_weights", attention_weights)):
        if tensor.device != device:
            raise ValueError(f"{name} is on {tensor.device} but value is on {device}")
    if level_start_index is None:
        starts = None
    else:
        starts = torch.as_tensor(level_start_index).to(device=device, dtype=torch.long)
        if starts.shape != (L,):
            raise ValueError(f"level_start_index must have shape ({L},), got {tuple(starts.shape)}")
    # One host copy of the (tiny) level table: the kernels index value without bounds checks.
    table = torch.cat([shapes.flatten(), starts]) if starts is not None else shapes.flatten()
    values = table.tolist()
    hw = tuple((int(values[2 * i]), int(values[2 * i + 1])) for i in range(L))
    offsets, total = [], 0
    for level, (h, w) in enumerate(hw):
        if h <= 0 or w <= 0:
            raise ValueError(f"spatial_shapes[{level}] must be positive, got ({h}, {w})")
        offsets.append(total)
        total += h * w
    if total != S:
        raise ValueError(f"value has S={S} positions but spatial_shapes {list(hw)} sum to {total}")
    if starts is None:
        starts = torch.tensor(offsets, dtype=torch.long, device=device)
    elif [int(v) for v in values[2 * L:]] != offsets:
        raise ValueError(
            f"level_start_index must be {offsets} for spatial_shapes {list(hw)}, got {values[2 * L:]}"
        )
    return shapes, starts, hw


def multi_scale_deformable_attn_pytorch(
    value: torch.Tensor,
    spatial_shapes: ShapesLike,
    level_start_index: Optional[torch.Tensor],
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """Reference implementation with ``F.grid_sample`` (bilinear, zero padding,
    ``align_corners=False``). Same arguments and result as :func:`multi_scale_deformable_attn`;
    ``level_start_index`` is only validated (levels are assumed contiguous in ``value``).
    Half / bfloat16 are computed in float32 and the result is cast back."""
    _, _, hw = _check_inputs(value, spatial_shapes, level_start_index, sampling_locations,
                             attention_weights)
    return _reference(value, hw, sampling_locations, attention_weights)


def _reference(value, hw, sampling_locations, attention_weights):
    N, S, M, D = value.shape
    _, Lq, _, L, P, _ = sampling_locations.shape
    dtype = value.dtype
    compute = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
    values = value.to(compute).split([h * w for h, w in hw], dim=1)
    grids = 2 * sampling_locations.to(compute) - 1  # [0, 1] -> [-1, 1]
    sampled = []
    for level, (h, w) in enumerate(hw):
        # (N, H*W, M, D) -> (N*M, D, H, W)
        v = values[level].flatten(2).transpose(1, 2).reshape(N * M, D, h, w)
        # (N, Lq, M, P, 2) -> (N*M, Lq, P, 2)
        g = grids[:, :, :, level].transpose(1, 2).flatten(0, 1)
        sampled.append(F.grid_sample(v, g, mode="bilinear", padding_mode="zeros", align_corners=False))
    # (N*M, D, Lq, L*P) weighted by (N*M, 1, Lq, L*P), summed over the L*P points
    weights = attention_weights.to(compute).transpose(1, 2).reshape(N * M, 1, Lq, L * P)
    out = (torch.stack(sampled, dim=-2).flatten(-2) * weights).sum(-1)
    return out.view(N, M * D, Lq).transpose(1, 2).contiguous().to(dtype)


class _MSDAFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, kernel, value, spatial_shapes, level_start_index, sampling_locations,
                attention_weights):
        output = kernel.forward(value, spatial_shapes, level_start_index, sampling_locations,
                                attention_weights)
        ctx.kernel = kernel
        ctx.save_for_backward(value, spatial_shapes, level_start_index, sampling_locations,
                              attention_weights)
        return output

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        value, spatial_shapes, level_start_index, sampling_locations, attention_weights = ctx.saved_tensors
        grad_value, grad_loc, grad_attn = ctx.kernel.backward(
            value, spatial_shapes, level_start_index, sampling_locations, attention_weights,
            grad_output.contiguous())
        return None, grad_value, None, None, grad_loc, grad_attn


def _warn_fallback(kind: str, reason: str) -> None:
    if kind in _warned:
        return
    _warned.add(kind)
    message = (f"skinformer: the {kind} multi-scale deformable attention kernel is unavailable "
               f"({reason}); using the slower PyTorch reference. Run `python -m skinformer.ops` "
               "for a diagnosis, or set SKINFORMER_MSDA_BACKEND=pytorch to silence this.")
    logger.warning(message)
    warnings.warn(message, MSDAFallbackWarning, stacklevel=4)


def _resolve_kernel(backend: str, device: torch.device):
    """The kernel module to use, or None for the reference."""
    from skinformer import ops  # lazy: nothing is loaded before the first call

    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        backend = os.environ.get(BACKEND_ENV, "auto").strip().lower() or "auto"
        if backend not in BACKENDS:
            raise ValueError(f"${BACKEND_ENV} must be one of {BACKENDS}, got {backend!r}")
    if backend == "pytorch":
        return None
    if backend in ("cpu", "cuda"):
        if device.type != backend:
            raise ValueError(f"backend={backend!r} needs {backend} tensors, but value is on {device}")
        return ops.get_kernel(backend)  # raises KernelUnavailableError (a RuntimeError)
    if device.type not in ("cpu", "cuda"):
        return None
    status = ops.load_kernel(device.type)
    if status.available:
        return status.module
    _warn_fallback(device.type, status.reason)
    return None


def multi_scale_deformable_attn(
    value: torch.Tensor,
    spatial_shapes: ShapesLike,
    level_start_index: Optional[torch.Tensor],
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
    backend: str = "auto",
) -> torch.Tensor:
    """Multi-scale deformable attention (Deformable-DETR).

    Each query gathers, per head and level, ``P`` bilinear samples (zero padding,
    ``align_corners=False``: the pixel coordinate of location ``x`` is ``x * W - 0.5``) and sums
    them with its attention weights. Differentiable in ``value``, ``sampling_locations`` and
    ``attention_weights``. Inputs may be non-contiguous; any batch size works.

    Args:
        value: ``N x S x M x D`` — per-head features of all levels, flattened and concatenated
            level by level (``S = sum_l H_l * W_l``).
        spatial_shapes: ``L x 2`` int64 ``(H_l, W_l)`` (a tensor or nested sequence).
        level_start_index: ``L`` int64, start of each level along ``S`` (None: computed).
        sampling_locations: ``N x Lq x M x L x P x 2`` normalised ``(x, y)``; ``[0, 1]`` spans
            the image, points outside contribute zero.
        attention_weights: ``N x Lq x M x L x P`` (usually softmax-normalised over ``L * P``).
        backend: ``"auto"`` | ``"pytorch"`` | ``"cpu"`` | ``"cuda"`` (see module docstring).
            An explicit ``"cpu"`` / ``"cuda"`` raises ``RuntimeError`` with the reason when the
            kernel cannot be had; ``"auto"`` falls back to the reference with one warning.

    Returns:
        ``N x Lq x (M * D)`` in ``value``'s dtype.

    Raises:
        ValueError: on a shape, dtype or device mismatch (the message names the argument).
    """
    shapes, starts, hw = _check_inputs(value, spatial_shapes, level_start_index,
                                       sampling_locations, attention_weights)
    kernel = _resolve_kernel(backend, value.device)
    if kernel is None:
        return _reference(value, hw, sampling_locations, attention_weights)
    op_dtype = torch.float32 if value.dtype in (torch.float16, torch.bfloat16) else value.dtype
    return _MSDAFunction.apply(
        kernel,
        value.contiguous(),
        shapes.contiguous(),
        starts.contiguous(),
        sampling_locations.to(op_dtype).contiguous(),
        attention_weights.to(op_dtype).contiguous(),
    )
