"""Which CPU kernel runs the model's ``nn.Linear`` layers (``MODEL.CPU_LINEAR_KERNEL``).

On CPU, PyTorch runs a float32 ``nn.Linear`` as an MKL SGEMM and a convolution through oneDNN.
MKL only takes its fastest code paths on Intel processors: on an AMD EPYC with AVX-512, a
``5376×256 @ 256×1024`` product (one FFN layer of the deformable encoder at 256², batch 4) runs
at about 200 GFLOPS as an SGEMM and about 460 GFLOPS as the same product written as a 1×1
convolution in channels-last layout; forward and backward of the mask transformers' linear
layers take about half the time. :class:`OneDNNLinear` is an ``nn.Linear`` (same parameters, same
state-dict keys) that computes ``x @ W^T + b`` that way on CPU float32 tensors; the products are
the same to float32 round-off (another summation order). Everything else (CUDA, other dtypes,
ONNX export and tracing) takes ``F.linear``.

A stride-1 1×1 convolution is the same kind of product over pixels. PyTorch itself runs it through
oneDNN only with several threads or a batch of 16 or more; single-threaded (one job per core, as
side-by-side benchmarks run) it takes its im2col + GEMM path, an MKL SGEMM again. Under
``"onednn"`` the 1×1 convolutions of the model (:class:`~skinformer.layers.Conv2d`, which plain
``nn.Conv2d`` 1×1 layers become) and the convolutions here are issued with a dilation of 2, which
sends them to oneDNN whatever the thread count: a 1×1 kernel has a single tap, so the dilation does
not change what is computed.

``"auto"`` picks oneDNN on CPUs whose vendor is not Intel, BLAS (``F.linear``) otherwise.
"""
import functools
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["CPU_LINEAR_KERNELS", "ONEDNN_1X1_DILATION", "OneDNNLinear", "is_pointwise_conv", "mask_product",
           "onednn_linear", "onednn_applies", "onednn_takes_1x1", "resolve_cpu_linear_kernel", "set_cpu_linear_kernel"]

CPU_LINEAR_KERNELS = ("auto", "blas", "onednn")
# Any dilation routes a 1×1 convolution to oneDNN (see the module docstring); it has no effect on
# a single-tap kernel.
ONEDNN_1X1_DILATION = 2
# PyTorch's own condition for oneDNN besides the thread count (ConvParams::use_mkldnn): a batch of
# one with at most this many input values goes to its dilated im2col path instead, which is slower.
_ONEDNN_MIN_NUMEL = 20480


def onednn_takes_1x1(x: torch.Tensor, groups: int = 1) -> bool:
    """Whether a dilated 1×1 convolution of ``x`` (``N×C×H×W``) runs on oneDNN, not a slow path."""
    return x.shape[0] > 1 or groups > 1 or x.numel() > _ONEDNN_MIN_NUMEL


def onednn_linear(x: torch.Tensor, weight: torch.Tensor, bias=None) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` as a 1×1 convolution over the rows of ``x``.

    Args:
        x: ``...×C_in``; weight: ``C_out×C_in``; bias: ``C_out`` or None.
    Returns:
        ``...×C_out`` (a view of the convolution's channels-last output).
    """
    c_in = x.shape[-1]
    rows = x.reshape(-1, c_in)
    n = rows.shape[0]
    # N×C rows seen as a 1×C×N×1 image in channels-last layout: no copy in or out.
    image = rows.view(1, n, 1, c_in).permute(0, 3, 1, 2)
    if not onednn_takes_1x1(image):
        # empty or small: oneDNN would not run it (and a convolution needs at least one pixel)
        return F.linear(x, weight, bias)
    out = F.conv2d(image, weight[:, :, None, None], bias, 1, 0, ONEDNN_1X1_DILATION)
    return out.permute(0, 2, 3, 1).reshape(*x.shape[:-1], weight.shape[0])


def mask_product(embed: torch.Tensor, features: torch.Tensor, kernel: str = "blas",
                 add: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Mask logits of query embeddings: ``einsum("bqc,bchw->bqhw", embed, features)`` (``+ add``).

    Args:
        embed: ``B×Q×C``; features: ``B×C×H×W``; add: optional ``B×Q×H×W`` added to the product.
        kernel: ``"onednn"`` computes each image's product as a 1×1 convolution with the
            embeddings as filters when nothing records gradients (inference; about 2x faster than
            the batched GEMM on CPUs where MKL is slow, while the convolution's backward is not
            faster than the GEMM's). Otherwise, and off the CPU float32 path, a batched GEMM.
    Returns:
        ``B×Q×H×W``.
    """
    if kernel == "onednn" and not torch.is_grad_enabled() and onednn_applies(features, embed):
        # contiguous: channels-last features give channels-last masks, which every later reshape copies
        dilation = ONEDNN_1X1_DILATION if onednn_takes_1x1(features[:1]) else 1
        out = torch.cat([F.conv2d(features[b:b + 1], embed[b, :, :, None, None], None, 1, 0, dilation)
                         for b in range(embed.shape[0])])
        out = out.contiguous()
        return out if add is None else out.add_(add)
    b, c, h, w = features.shape
    if add is None:
        return torch.bmm(embed, features.reshape(b, c, h * w)).view(b, -1, h, w)
    return torch.baddbmm(add.reshape(b, -1, h * w), embed, features.reshape(b, c, h * w)).view(b, -1, h, w)


def onednn_applies(*tensors: torch.Tensor) -> bool:
    """Whether the oneDNN form is used for these operands: CPU float32, and not while exporting
    (exported graphs keep the portable op; the 1×1 convolution is a CPU kernel choice)."""
    if (torch.jit.is_tracing() or torch.jit.is_scripting() or torch.onnx.is_in_onnx_export()
            or torch.compiler.is_compiling()):
        return False
    return all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors)


class OneDNNLinear(nn.Linear):
    """``nn.Linear`` whose CPU float32 forward is :func:`onednn_linear` (see the module docstring).

    ``...×in_features -> ...×out_features``. Built from an existing layer with
    :meth:`from_linear`, which shares its parameters.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x @ W^T + b``: ``...×in_features -> ...×out_features``."""
        if onednn_applies(x, self.weight):
            return onednn_linear(x, self.weight, self.bias)
        return F.linear(x, self.weight, self.bias)

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> "OneDNNLinear":
        """A layer computing the same map with ``linear``'s own parameter objects (an optimizer or
        checkpoint that holds them keeps working)."""
        return _rebuilt(cls, linear)


def _rebuilt(cls, linear: nn.Linear) -> nn.Linear:
    new = cls.__new__(cls)
    nn.Module.__init__(new)
    new.in_features, new.out_features = linear.in_features, linear.out_features
    new.weight, new.bias = linear.weight, linear.bias
    new.train(linear.training)
    return new


@functools.lru_cache(maxsize=None)
def _cpu_vendor() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("vendor_id"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def resolve_cpu_linear_kernel(kernel: str, key: str = "MODEL.CPU_LINEAR_KERNEL") -> str:
    """``"blas"`` or ``"onednn"`` for a ``MODEL.CPU_LINEAR_KERNEL`` value (``"auto"``: oneDNN unless
    the CPU is an Intel one or oneDNN is not built in). ``ValueError`` naming ``key`` otherwise."""
    if kernel not in CPU_LINEAR_KERNELS:
        raise ValueError(f"{key} is {kernel!r}; expected one of {CPU_LINEAR_KERNELS}")
    if kernel == "onednn" and not torch.backends.mkldnn.is_available():
        raise ValueError(f"{key} is 'onednn' but this PyTorch build has no oneDNN (MKL-DNN); use 'blas'")
    if kernel == "auto":
        vendor = _cpu_vendor()
        use = torch.backends.mkldnn.is_available() and vendor not in ("", "GenuineIntel")
        return "onednn" if use else "blas"
    return kernel


def is_pointwise_conv(conv: nn.Conv2d) -> bool:
    """Whether ``conv`` is a 1×1, stride-1, undilated, unpadded convolution (a linear layer over pixels)."""
    return (tuple(conv.kernel_size) == (1, 1) and tuple(conv.stride) == (1, 1) and tuple(conv.dilation) == (1, 1)
            and conv.padding in ((0, 0), "valid") and conv.padding_mode == "zeros")


def set_cpu_linear_kernel(model: nn.Module, kernel: str) -> int:
    """Make every plain ``nn.Linear`` of ``model`` an :class:`OneDNNLinear` (``"onednn"``) or a plain
    ``nn.Linear`` again (``"blas"``), in place, parameters shared. Subclasses such as the output
    projection of ``nn.MultiheadAttention`` (whose weights that module reads itself) are left alone.
    Under ``"onednn"`` every plain 1×1 ``nn.Conv2d`` (:func:`is_pointwise_conv`) becomes a
    :class:`~skinformer.layers.Conv2d` without norm or activation (the same object, parameters and
    state-dict keys). Modules with a ``cpu_linear_kernel`` attribute (those calling
    :func:`mask_product`, every :class:`~skinformer.layers.Conv2d`) get ``kernel``. Returns the number
    of layers changed."""
    from .conv import Conv2d

    if kernel not in ("blas", "onednn"):
        raise ValueError(f"set_cpu_linear_kernel: kernel must be 'blas' or 'onednn', got {kernel!r}")
    changed = 0
    source, target = (nn.Linear, OneDNNLinear) if kernel == "onednn" else (OneDNNLinear, nn.Linear)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is source:
                setattr(parent, name, _rebuilt(target, child))
                changed += 1
            elif kernel == "onednn" and type(child) is nn.Conv2d and is_pointwise_conv(child):
                # in place: hooks, parameters and the optimizer's references stay as they are
                child.__class__ = Conv2d
                child.norm = child.activation = None
                changed += 1
    for module in model.modules():
        if hasattr(module, "cpu_linear_kernel"):
            module.cpu_linear_kernel = kernel
    return changed
