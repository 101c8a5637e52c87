"""MODEL.CPU_LINEAR_KERNEL: nn.Linear layers computed as oneDNN 1x1 convolutions on CPU."""
import os
import sys

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from skinformer.config import get_cfg
from skinformer.layers import linear as linear_mod
from skinformer.layers import Conv2d, OneDNNLinear, onednn_linear, resolve_cpu_linear_kernel, set_cpu_linear_kernel

needs_onednn = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="PyTorch built without oneDNN")


@needs_onednn
@pytest.mark.parametrize("shape", [(7, 16), (2, 5, 16), (3, 2, 4, 16), (0, 16), (3, 500, 16)])
@pytest.mark.parametrize("bias", [True, False])
def test_onednn_linear_matches_f_linear_forward_and_backward(shape, bias):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, generator=g, requires_grad=True)
    w = torch.randn(24, 16, generator=g, requires_grad=True)
    b = torch.randn(24, generator=g, requires_grad=True) if bias else None
    want = F.linear(x, w, b)
    got = onednn_linear(x, w, b)
    assert got.shape == want.shape == (*shape[:-1], 24)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    if x.numel() == 0:
        return
    grad = torch.randn(want.shape, generator=g)
    params = [x, w] + ([b] if bias else [])
    want_grads = torch.autograd.grad(want, params, grad)
    got_grads = torch.autograd.grad(got, params, grad)
    for a, e in zip(got_grads, want_grads):
        torch.testing.assert_close(a, e, rtol=1e-5, atol=1e-4)


@needs_onednn
def test_onednn_linear_takes_a_non_contiguous_input():
    x = torch.randn(16, 6).t()  # 6×16, transposed view
    w, b = torch.randn(3, 16), torch.randn(3)
    torch.testing.assert_close(onednn_linear(x, w, b), F.linear(x, w, b), rtol=1e-5, atol=1e-5)


def _tiny_cfg(arch):
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "modeling"))
    from mask_former_toy import tiny_cfg

    return tiny_cfg(arch, num_classes=2)


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Sequential(nn.Linear(16, 4)),
                         nn.MultiheadAttention(4, 1, batch_first=True).out_proj)


@needs_onednn
def test_set_kernel_swaps_plain_linears_sharing_their_parameters():
    net = _net()
    params = list(net.parameters())
    keys = net.state_dict().keys()
    assert set_cpu_linear_kernel(net, "onednn") == 2
    assert type(net[0]) is OneDNNLinear and type(net[2][0]) is OneDNNLinear
    # nn.MultiheadAttention reads its out_proj weights itself: the subclass stays as it is
    assert type(net[3]) is nn.modules.linear.NonDynamicallyQuantizableLinear
    assert all(a is b for a, b in zip(net.parameters(), params))
    assert net.state_dict().keys() == keys
    x = torch.randn(5, 8)
    got = net[:3](x)
    assert set_cpu_linear_kernel(net, "blas") == 2
    assert type(net[0]) is nn.Linear and type(net[2][0]) is nn.Linear
    torch.testing.assert_close(got, net[:3](x), rtol=1e-5, atol=1e-6)


@needs_onednn
def test_onednn_layer_falls_back_to_f_linear_off_the_fast_path(monkeypatch):
    layer = OneDNNLinear.from_linear(nn.Linear(4, 3))
    calls = []
    monkeypatch.setattr(linear_mod, "onednn_linear", lambda *a: calls.append(1) or F.linear(*a))
    layer(torch.randn(2, 4))
    assert calls == [1]
    layer.double()(torch.randn(2, 4, dtype=torch.float64))  # another dtype
    traced = torch.jit.trace(OneDNNLinear.from_linear(nn.Linear(4, 3)), torch.randn(2, 4), check_trace=False)
    assert calls == [1]
    assert "aten::linear" in str(traced.graph) and "conv" not in str(traced.graph)
    exported = torch.export.export(OneDNNLinear.from_linear(nn.Linear(4, 3)), (torch.randn(2, 4),))
    ops = [str(n.target) for n in exported.graph.nodes if n.op == "call_function"]
    assert ops == ["aten.linear.default"] and calls == [1]


def test_auto_follows_the_cpu_vendor(monkeypatch):
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: True)
    for vendor, want in [("AuthenticAMD", "onednn"), ("GenuineIntel", "blas"), ("", "blas")]:
        monkeypatch.setattr(linear_mod, "_cpu_vendor", lambda v=vendor: v)
        assert resolve_cpu_linear_kernel("auto") == want, vendor
    assert resolve_cpu_linear_kernel("blas") == "blas"
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: False)
    monkeypatch.setattr(linear_mod, "_cpu_vendor", lambda: "AuthenticAMD")
    assert resolve_cpu_linear_kernel("auto") == "blas"
    with pytest.raises(ValueError, match="no oneDNN"):
        resolve_cpu_linear_kernel("onednn")


def test_unknown_kernel_names_the_key():
    with pytest.raises(ValueError, match=r"MODEL.CPU_LINEAR_KERNEL is 'mkl'; expected one of"):
        resolve_cpu_linear_kernel("mkl")
    with pytest.raises(ValueError, match="kernel must be"):
        set_cpu_linear_kernel(nn.Linear(2, 2), "auto")


@needs_onednn
@pytest.mark.parametrize("kernel, cls", [("onednn", OneDNNLinear), ("blas", nn.Linear)])
def test_build_model_puts_the_linears_on_the_configured_kernel(kernel, cls):
    from skinformer.modeling import build_model

    cfg = _tiny_cfg("SiMaskFormer")
    cfg.MODEL.CPU_LINEAR_KERNEL = kernel
    model = build_model(cfg)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)
               and type(m) is not nn.modules.linear.NonDynamicallyQuantizableLinear]
    assert linears and all(type(m) is cls for m in linears)


def test_default_is_auto():
    assert get_cfg().MODEL.CPU_LINEAR_KERNEL == "auto"


@pytest.mark.parametrize("kernel", ["blas"] + (["onednn"] if torch.backends.mkldnn.is_available() else []))
@pytest.mark.parametrize("grad", [False, True])
@pytest.mark.parametrize("with_add", [False, True])
def test_mask_product_is_the_einsum(kernel, grad, with_add, monkeypatch):
    g = torch.Generator().manual_seed(0)
    embed, features = torch.randn(3, 5, 8, generator=g), torch.randn(3, 8, 6, 7, generator=g)
    add = torch.randn(3, 5, 6, 7, generator=g) if with_add else None
    want = torch.einsum("bqc,bchw->bqhw", embed, features) + (add if with_add else 0)
    convs = []
    real_conv = F.conv2d
    monkeypatch.setattr(linear_mod.F, "conv2d", lambda *a, **k: convs.append(1) or real_conv(*a, **k))
    with torch.set_grad_enabled(grad):
        got = linear_mod.mask_product(embed, features, kernel, add=add)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    # the convolution only without autograd (its backward is not faster than the GEMM's)
    assert len(convs) == (3 if kernel == "onednn" and not grad else 0)


@needs_onednn
def test_set_kernel_reaches_the_mask_products_of_the_decoder():
    from skinformer.modeling import build_model

    for arch in ("SiMaskFormer", "MaskFormer"):
        cfg = _tiny_cfg(arch)
        cfg.MODEL.CPU_LINEAR_KERNEL = "onednn"
        model = build_model(cfg)
        decoders = [m for m in model.modules() if hasattr(m, "cpu_linear_kernel") and not isinstance(m, Conv2d)]
        assert [type(m).__name__ for m in decoders] == [
            "SiMaskFormerDecoder" if arch == "SiMaskFormer" else "MultiScaleMaskedTransformerDecoder"]
        assert decoders[0].cpu_linear_kernel == "onednn"
        set_cpu_linear_kernel(model, "blas")
        assert all(getattr(m, "cpu_linear_kernel", "blas") == "blas" for m in model.modules())


def _cpu_ops(fn):
    """Names of the aten ops ``fn()`` runs on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            fn()
    finally:
        torch.set_num_threads(threads)
    return {e.key for e in prof.key_averages()}


@needs_onednn
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("groups, bias", [(1, True), (2, False)])
def test_pointwise_conv_on_onednn_is_the_same_convolution(channels_last, groups, bias):
    g = torch.Generator().manual_seed(0)
    conv = Conv2d(8, 12, 1, groups=groups, bias=bias)
    x = torch.randn(2, 8, 9, 7, generator=g)
    if channels_last:
        conv, x = conv.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last)
    x.requires_grad_()
    want = F.conv2d(x, conv.weight, conv.bias, groups=groups)
    w_grad = torch.autograd.grad(want.square().sum(), [x, conv.weight])
    conv.cpu_linear_kernel = "onednn"
    got = conv(x)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    for a, b in zip(torch.autograd.grad(got.square().sum(), [x, conv.weight]), w_grad):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-4)


@needs_onednn
def test_pointwise_convs_and_linears_reach_onednn_on_one_thread():
    # PyTorch sends a single-threaded 1x1 convolution of a small batch to its im2col + GEMM path
    conv = Conv2d(32, 64, 1)
    x = torch.randn(2, 32, 16, 16)
    conv.cpu_linear_kernel = "onednn"
    assert "aten::mkldnn_convolution" in _cpu_ops(lambda: conv(x))
    ops = _cpu_ops(lambda: onednn_linear(torch.randn(1000, 32), torch.randn(64, 32)))
    assert "aten::mkldnn_convolution" in ops and "aten::_slow_conv2d_forward" not in ops
    # below PyTorch's size for oneDNN a dilated convolution would take a slow path: F.linear instead
    small = _cpu_ops(lambda: onednn_linear(torch.randn(300, 32), torch.randn(64, 32)))
    assert "aten::linear" in small and not any("conv" in op for op in small)
    one = _cpu_ops(lambda: conv(torch.randn(1, 32, 4, 4)))
    assert "aten::slow_conv_dilated2d" not in one
    # a 3x3 convolution is left to PyTorch's own choice
    conv3 = Conv2d(32, 64, 3, padding=1)
    conv3.cpu_linear_kernel = "onednn"
    torch.testing.assert_close(conv3(x), F.conv2d(x, conv3.weight, conv3.bias, padding=1))


@needs_onednn
def test_set_kernel_makes_plain_pointwise_convs_skinformer_convs():
    net = nn.Sequential(nn.Conv2d(4, 6, 1), nn.Conv2d(6, 6, 3, padding=1), nn.Conv2d(6, 4, 1, stride=2),
                        nn.Sequential(nn.Conv2d(4, 4, 1, bias=False)))
    x = torch.randn(1, 4, 8, 8)
    want = net(x)
    first, params, keys = net[0], list(net.parameters()), list(net.state_dict().keys())
    assert set_cpu_linear_kernel(net, "onednn") == 2
    assert net[0] is first and type(net[0]) is Conv2d and type(net[3][0]) is Conv2d
    assert type(net[1]) is nn.Conv2d and type(net[2]) is nn.Conv2d  # 3x3 and strided: unchanged
    assert net[0].cpu_linear_kernel == "onednn" and net[0].norm is None and net[0].activation is None
    assert all(a is b for a, b in zip(net.parameters(), params)) and list(net.state_dict().keys()) == keys
    torch.testing.assert_close(net(x), want, rtol=1e-5, atol=1e-5)
    set_cpu_linear_kernel(net, "blas")
    assert net[0].cpu_linear_kernel == "blas"
    torch.testing.assert_close(net(x), want, rtol=1e-5, atol=1e-5)
