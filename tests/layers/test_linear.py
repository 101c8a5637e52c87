"""MODEL.CPU_LINEAR_KERNEL: nn.Linear layers computed as oneDNN 1x1 convolutions on CPU."""
import os
import sys

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from skinformer.config import get_cfg
from skinformer.layers import linear as linear_mod
from skinformer.layers import OneDNNLinear, onednn_linear, resolve_cpu_linear_kernel, set_cpu_linear_kernel

needs_onednn = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="PyTorch built without oneDNN")


@needs_onednn
@pytest.mark.parametrize("shape", [(7, 16), (2, 5, 16), (3, 2, 4, 16), (0, 16)])
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
        decoders = [m for m in model.modules() if hasattr(m, "cpu_linear_kernel")]
        assert [type(m).__name__ for m in decoders] == [
            "SiMaskFormerDecoder" if arch == "SiMaskFormer" else "MultiScaleMaskedTransformerDecoder"]
        assert decoders[0].cpu_linear_kernel == "onednn"
        set_cpu_linear_kernel(model, "blas")
        assert all(getattr(m, "cpu_linear_kernel", "blas") == "blas" for m in model.modules())
