"""layers.softplus: softplus / BCE-with-logits without PyTorch's scalar CPU log1p."""
import pytest
import torch
import torch.nn.functional as F

from skinformer.layers import binary_cross_entropy_with_logits, softplus


def _wide_range(dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    special = torch.tensor([0.0, -0.0, 1e-30, -1e-30, 1e-8, -1e-8, 0.5, -0.5, 17.0, -17.0, 20.0, -20.0,
                            86.9, -86.9, 87.0, -87.0, 88.0, -88.0, 100.0, -100.0, 1e4, -1e4])
    return torch.cat([torch.randn(20000, generator=g) * 3, torch.randn(20000, generator=g) * 30,
                      torch.linspace(-90, 90, 20001), special]).to(dtype)


@pytest.mark.parametrize("dtype,rtol", [(torch.float32, 4e-7), (torch.float64, 1e-14)])
def test_softplus_matches_the_exact_value(dtype, rtol):
    x = _wide_range(dtype)
    got = softplus(x)
    xd = x.double()
    # F.softplus returns x itself above its threshold of 20; this is the exact value in float64
    exact = xd.clamp(min=0) + torch.log1p(torch.exp(-xd.abs()))
    assert got.dtype == dtype and got.shape == x.shape
    assert torch.isfinite(got).all() and (got > 0).all()
    # exp(-|x|) is capped at exp(-87) (subnormals are slow): below that only the absolute error counts
    normal = exact > 1e-37
    rel = (got.double() - exact).abs() / exact
    assert rel[normal].max() <= rtol
    assert (got.double() - exact)[~normal].abs().max() <= 2e-38


def test_softplus_agrees_with_torch_to_round_off():
    x = _wide_range()
    torch.testing.assert_close(softplus(x), F.softplus(x), rtol=4e-7, atol=2e-38)


def test_softplus_gradient_is_the_sigmoid():
    x = (torch.randn(64, dtype=torch.float64) * 5).requires_grad_()
    assert torch.autograd.gradcheck(softplus, (x,))
    y = _wide_range().requires_grad_()
    g = torch.randn(y.shape, generator=torch.Generator().manual_seed(2))
    softplus(y).backward(g)
    torch.testing.assert_close(y.grad, g * torch.sigmoid(y.detach()))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_softplus_of_other_dtypes_is_torchs(dtype):
    x = torch.randn(100).to(dtype)
    assert torch.equal(softplus(x), F.softplus(x))


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_bce_with_logits_matches_torch_value_and_gradient(reduction):
    g = torch.Generator().manual_seed(1)
    x = (torch.randn(8, 300, generator=g) * 6).requires_grad_()
    t = torch.rand(8, 300, generator=g)  # soft targets too
    t[:4] = (t[:4] > 0.5).float()
    got = binary_cross_entropy_with_logits(x, t, reduction=reduction)
    x_ref = x.detach().clone().requires_grad_()
    want = F.binary_cross_entropy_with_logits(x_ref, t, reduction=reduction)
    torch.testing.assert_close(got, want, rtol=2e-6, atol=1e-6)
    w = torch.randn(got.shape, generator=g)
    got.backward(w)
    want.backward(w)
    # w·σ(x) - w·t against w·(σ(x) - t): the same gradient up to one rounding of |w|
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-5, atol=1e-6)


def test_bce_with_logits_names_a_bad_reduction():
    with pytest.raises(ValueError, match="reduction 'avg'"):
        binary_cross_entropy_with_logits(torch.zeros(2), torch.zeros(2), reduction="avg")


def test_softplus_under_no_grad_gives_the_same_values():
    # the matching costs call it under no_grad, where only the forward runs
    x = _wide_range()
    with torch.no_grad():
        a = softplus(x)
    torch.testing.assert_close(a, softplus(x).detach())
