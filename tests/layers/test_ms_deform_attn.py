"""Multi-scale deformable attention: kernels vs the grid_sample reference, fallbacks, module."""
import math
import subprocess
import sys
import warnings

import pytest
import torch

from skinformer import ops
from skinformer.layers import (
    MSDeformAttn,
    multi_scale_deformable_attn,
    multi_scale_deformable_attn_pytorch,
)
from skinformer.layers import ms_deform_attn_func as func
from skinformer.ops import loader

HAS_CUDA = torch.cuda.is_available()

TOL = {  # (rtol, atol) of a kernel against the reference
    torch.float64: (1e-10, 1e-10),
    torch.float32: (1e-5, 1e-5),
    torch.float16: (1e-2, 1e-2),
    torch.bfloat16: (1e-2, 1e-2),
}


def require_kernel(kind):
    """The kernel module; skips only when the toolchain is missing, fails on a broken build."""
    if kind == "cuda" and not HAS_CUDA:
        pytest.skip("no CUDA device")
    status = ops.load_kernel(kind)
    if not status.available:
        toolchain = ("no C++ compiler", "ninja is not installed", "no CUDA toolkit", "does not match")
        if any(text in status.reason for text in toolchain):
            pytest.skip(f"{kind} kernel unavailable here: {status.reason}")
        pytest.fail(f"{kind} kernel failed to build or load: {status.reason}")
    return status.module


KERNELS = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


def make_problem(N, M, D, shapes, Lq, P, dtype=torch.float64, device="cpu", seed=0):
    gen = torch.Generator().manual_seed(seed)
    shapes_t = torch.tensor(shapes, dtype=torch.long)
    S, L = int((shapes_t[:, 0] * shapes_t[:, 1]).sum()), len(shapes)
    starts = torch.cat([shapes_t.new_zeros(1), (shapes_t[:, 0] * shapes_t[:, 1]).cumsum(0)[:-1]])
    value = torch.rand(N, S, M, D, generator=gen, dtype=torch.float64) * 2 - 1
    # mostly inside the image, some points outside on every side
    loc = torch.rand(N, Lq, M, L, P, 2, generator=gen, dtype=torch.float64) * 1.4 - 0.2
    weights = torch.rand(N, Lq, M, L, P, generator=gen, dtype=torch.float64)
    weights = weights / weights.sum((-1, -2), keepdim=True)
    cast = lambda t: t.to(device=device, dtype=dtype)  # noqa: E731
    return cast(value), shapes_t.to(device), starts.to(device), cast(loc), cast(weights)


def run(backend, value, shapes, starts, loc, weights, grad=None):
    """Output and the three gradients (value, locations, weights)."""
    leaves = [t.detach().clone().requires_grad_(True) for t in (value, loc, weights)]
    out = multi_scale_deformable_attn(leaves[0], shapes, starts, leaves[1], leaves[2], backend=backend)
    if grad is None:
        grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    out.backward(grad.to(out.device, out.dtype))
    return [out.detach()] + [t.grad for t in leaves]


def assert_parity(kind, dtype, problem, grad=None):
    got = run(kind, *problem, grad=grad)
    # the reference always computes half / bfloat16 in float32, from the same rounded inputs
    expected = run("pytorch", *problem, grad=grad)
    rtol, atol = TOL[dtype]
    for name, a, b in zip(("output", "grad value", "grad locations", "grad weights"), got, expected):
        assert a.dtype == b.dtype, name
        scale = 1.0
        if name == "grad locations":  # scales with the level size; compare relative to it
            scale = max(1.0, b.abs().max().item()) if dtype in (torch.float16, torch.bfloat16) else 1.0
        torch.testing.assert_close(a.double() / scale, b.double() / scale, rtol=rtol, atol=atol,
                                   msg=lambda m: f"{kind} {dtype} {name}: {m}")


CASES = {
    # name: N, M, D, level shapes, Lq, P
    "two levels, D=32": (2, 2, 32, [(6, 4), (3, 2)], 5, 3),
    "batch 3, one level, Lq=1, D=30": (3, 1, 30, [(5, 7)], 1, 2),
    "batch 1, 1x1 level, D=71": (1, 3, 71, [(4, 4), (2, 2), (1, 1)], 4, 4),
    "only 1x1 levels": (2, 2, 8, [(1, 1), (1, 1)], 3, 2),
}


@pytest.mark.parametrize("kind", KERNELS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16],
                         ids=lambda d: str(d).replace("torch.", ""))
@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_kernel_matches_reference(kind, dtype, case):
    require_kernel(kind)
    assert_parity(kind, dtype, make_problem(*CASES[case], dtype=dtype, device=kind))


def border_locations(shapes, M, P, dtype, device):
    """Points exactly on image borders, pixel centres, cell edges and just outside (W, H are
    powers of two so every coordinate is exact)."""
    coords = []
    for h, w in shapes:
        xs = [0.0, 1.0, 0.5 / w, (w - 0.5) / w, -0.5 / w, (w + 0.5) / w, 1.0 / w, -0.1, 1.1, 0.5]
        ys = [0.0, 1.0, 0.5 / h, (h - 0.5) / h, -0.5 / h, (h + 0.5) / h, 1.0 / h, 0.5, 0.5, -2.0]
        coords.append(torch.tensor([[x, y] for x in xs for y in ys], dtype=torch.float64))
    pts = torch.stack(coords, 1)  # Q x L x 2
    Q, L = pts.shape[:2]
    loc = pts.view(1, Q, 1, L, 1, 2).expand(1, Q, M, L, P, 2).contiguous()
    return loc.to(device, dtype)


@pytest.mark.parametrize("kind", KERNELS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_borders_and_outside(kind, dtype):
    require_kernel(kind)
    shapes = [(4, 8), (2, 2), (1, 1)]
    value, shapes_t, starts, _, _ = make_problem(1, 2, 16, shapes, 1, 2, dtype=dtype, device=kind)
    loc = border_locations(shapes, 2, 2, dtype, kind)
    weights = torch.rand(loc.shape[:-1], generator=torch.Generator().manual_seed(3),
                         dtype=torch.float64).to(kind, dtype)
    assert_parity(kind, dtype, (value, shapes_t, starts, loc, weights))
    # points entirely outside contribute nothing
    far = torch.full_like(loc, 3.0)
    out = multi_scale_deformable_attn(value, shapes_t, starts, far, weights, backend=kind)
    assert out.abs().max().item() == 0.0


@pytest.mark.parametrize("kind", KERNELS)
def test_zero_attention_weights(kind):
    require_kernel(kind)
    value, shapes, starts, loc, weights = make_problem(2, 2, 16, [(5, 3), (2, 2)], 4, 2, device=kind)
    weights = torch.zeros_like(weights)
    got = run(kind, value, shapes, starts, loc, weights)
    expected = run("pytorch", value, shapes, starts, loc, weights)
    assert got[0].abs().max().item() == 0.0
    assert got[1].abs().max().item() == 0.0  # grad value
    assert got[2].abs().max().item() == 0.0  # grad locations
    torch.testing.assert_close(got[3], expected[3], rtol=1e-10, atol=1e-10)  # grad weights


@pytest.mark.parametrize("kind", KERNELS)
def test_non_contiguous_inputs(kind):
    require_kernel(kind)
    value, shapes, starts, loc, weights = make_problem(2, 3, 10, [(4, 5), (2, 3)], 6, 2, device=kind)
    # same values, non-contiguous storage
    value_nc = value.permute(0, 2, 1, 3).contiguous().permute(0, 2, 1, 3)
    loc_nc = loc.transpose(1, 2).contiguous().transpose(1, 2)
    weights_nc = torch.cat([weights, weights], -1)[..., : weights.shape[-1]]
    starts_nc = torch.stack([starts, starts], -1)[:, 0]
    assert not (value_nc.is_contiguous() or loc_nc.is_contiguous() or weights_nc.is_contiguous())
    got = run(kind, value_nc, shapes, starts_nc, loc_nc, weights_nc)
    expected = run("pytorch", value, shapes, starts, loc, weights)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kind", KERNELS)
def test_gradcheck(kind):
    require_kernel(kind)
    for D in (3, 32):
        value, shapes, starts, loc, weights = make_problem(2, 2, D, [(3, 4), (2, 1)], 3, 2, device=kind)
        loc = loc.clamp(-0.1, 1.1)
        inputs = tuple(t.detach().requires_grad_(True) for t in (value, loc, weights))
        fn = lambda v, l, w: multi_scale_deformable_attn(v, shapes, starts, l, w, backend=kind)  # noqa: E731
        assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-5)


def test_reference_gradcheck():
    value, shapes, starts, loc, weights = make_problem(1, 2, 3, [(3, 4), (2, 1)], 2, 2)
    inputs = tuple(t.detach().requires_grad_(True) for t in (value, loc, weights))
    fn = lambda v, l, w: multi_scale_deformable_attn_pytorch(v, shapes, starts, l, w)  # noqa: E731
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("kind", KERNELS)
def test_autocast_and_mixed_dtypes(kind):
    require_kernel(kind)
    value, shapes, starts, loc, weights = make_problem(2, 2, 16, [(6, 4), (3, 2)], 5, 2,
                                                       dtype=torch.float32, device=kind)
    expected = multi_scale_deformable_attn(value, shapes, starts, loc, weights, backend="pytorch")
    low = torch.bfloat16
    with torch.autocast(device_type=kind, dtype=low):
        leaves = [t.clone().requires_grad_(True) for t in (value.to(low), loc, weights)]
        out = multi_scale_deformable_attn(leaves[0], shapes, starts, leaves[1], leaves[2], backend=kind)
    assert out.dtype == low
    torch.testing.assert_close(out.float(), expected, rtol=1e-2, atol=1e-2)
    out.float().sum().backward()
    # gradients come back in each input's dtype (locations / weights stay float32)
    assert [t.grad.dtype for t in leaves] == [low, torch.float32, torch.float32]


def test_cpu_kernel_respects_thread_count():
    require_kernel("cpu")
    problem = make_problem(2, 2, 16, [(8, 8), (4, 4)], 40, 4, dtype=torch.float32)
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            results.append(run("cpu", *problem))
    finally:
        torch.set_num_threads(before)
    # backward reduces per (n, m) in a fixed order: results are identical for any thread count
    for a, b in zip(*results):
        assert torch.equal(a, b)


# --------------------------------------------------------------------------------------------
# validation and dispatch


def test_shape_errors_name_the_argument():
    value, shapes, starts, loc, weights = make_problem(2, 2, 4, [(3, 4), (2, 1)], 3, 2)
    cases = [
        ((value[0], shapes, starts, loc, weights), "value must have shape N x S x M x D"),
        ((value, shapes[:, :1], starts, loc, weights), "spatial_shapes must have shape L x 2"),
        ((value, shapes, starts[:1], loc, weights), "level_start_index must have shape (2,)"),
        ((value, shapes, starts + 1, loc, weights), "level_start_index must be [0, 12]"),
        ((value, shapes, starts, loc[:, :, :1], weights), "sampling_locations must have shape"),
        ((value, shapes, starts, loc[..., :1], weights), "sampling_locations must have shape"),
        ((value, shapes, starts, loc, weights[..., :1]), "attention_weights must have shape"),
        ((value[:, :5], shapes, starts, loc, weights), "value has S=5 positions"),
        ((value, shapes.float(), starts, loc, weights), "spatial_shapes must be an integer"),
        ((value.long(), shapes, starts, loc, weights), "value must be a floating-point tensor"),
    ]
    for backend in ("pytorch", "auto"):
        for args, message in cases:
            with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")
                               .replace("[", r"\[").replace("]", r"\]")):
                multi_scale_deformable_attn(*args, backend=backend)


def test_working_kernel_errors_are_raised():
    kernel = require_kernel("cpu")
    value, shapes, starts, loc, weights = make_problem(2, 2, 4, [(3, 4), (2, 1)], 3, 2)
    with pytest.raises(RuntimeError, match="sampling_loc must be N x Lq x M x L x P x 2"):
        kernel.forward(value, shapes, starts, loc[:, :, :, :1].contiguous(), weights)
    with pytest.raises(RuntimeError, match="value has S=10 positions"):
        kernel.forward(value[:, :10].contiguous(), shapes, starts, loc, weights)
    with pytest.raises(RuntimeError, match="grad_output must be"):
        kernel.backward(value, shapes, starts, loc, weights, torch.zeros(1, dtype=value.dtype))


class _ExplodingKernel:
    device = "cpu"

    @staticmethod
    def forward(*args):
        raise RuntimeError("simulated out of memory")

    backward = forward


def test_auto_does_not_swallow_kernel_errors(monkeypatch):
    monkeypatch.setitem(loader._cache, "cpu",
                        loader.KernelStatus("cpu", True, origin="test", module=_ExplodingKernel()))
    value, shapes, starts, loc, weights = make_problem(1, 2, 4, [(3, 4)], 3, 2)
    with pytest.raises(RuntimeError, match="simulated out of memory"):
        multi_scale_deformable_attn(value, shapes, starts, loc, weights)


def test_backend_argument_and_env(monkeypatch):
    value, shapes, starts, loc, weights = make_problem(1, 2, 4, [(3, 4)], 3, 2)
    with pytest.raises(ValueError, match="backend must be one of"):
        multi_scale_deformable_attn(value, shapes, starts, loc, weights, backend="triton")
    with pytest.raises(ValueError, match="needs cuda tensors"):
        multi_scale_deformable_attn(value, shapes, starts, loc, weights, backend="cuda")
    # the env var replaces "auto": "pytorch" must not touch the kernels
    monkeypatch.setitem(loader._cache, "cpu",
                        loader.KernelStatus("cpu", True, origin="test", module=_ExplodingKernel()))
    monkeypatch.setenv(func.BACKEND_ENV, "pytorch")
    out = multi_scale_deformable_attn(value, shapes, starts, loc, weights)
    torch.testing.assert_close(out, multi_scale_deformable_attn_pytorch(value, shapes, starts, loc, weights))
    monkeypatch.setenv(func.BACKEND_ENV, "fastest")
    with pytest.raises(ValueError, match=func.BACKEND_ENV):
        multi_scale_deformable_attn(value, shapes, starts, loc, weights)


def test_level_start_index_may_be_omitted_and_shapes_a_list():
    value, shapes, starts, loc, weights = make_problem(2, 2, 4, [(3, 4), (2, 1)], 3, 2)
    expected = multi_scale_deformable_attn(value, shapes, starts, loc, weights, backend="pytorch")
    out = multi_scale_deformable_attn(value, [(3, 4), (2, 1)], None, loc, weights)
    torch.testing.assert_close(out, expected)


@pytest.fixture
def isolated_loader(monkeypatch):
    """A loader with no remembered kernels and no prebuilt modules; restored afterwards."""
    monkeypatch.setattr(loader, "_cache", {})
    monkeypatch.setattr(func, "_warned", set())
    monkeypatch.setattr(ops.build, "PREBUILT_MODULES",
                        {"cpu": "skinformer._no_such_prebuilt_cpu", "cuda": "skinformer._no_such_prebuilt_cuda"})
    monkeypatch.delenv(func.BACKEND_ENV, raising=False)
    return monkeypatch


def test_auto_falls_back_with_one_warning_when_sources_are_missing(isolated_loader, tmp_path):
    isolated_loader.setenv("SKINFORMER_OPS_SOURCES", str(tmp_path / "no_ops_here"))
    value, shapes, starts, loc, weights = make_problem(1, 2, 4, [(3, 4)], 3, 2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out1 = multi_scale_deformable_attn(value, shapes, starts, loc, weights)
        out2 = multi_scale_deformable_attn(value, shapes, starts, loc, weights)
    fallback = [w for w in caught if issubclass(w.category, func.MSDAFallbackWarning)]
    assert len(fallback) == 1
    assert "sources not found" in str(fallback[0].message)
    expected = multi_scale_deformable_attn_pytorch(value, shapes, starts, loc, weights)
    torch.testing.assert_close(out1, expected)
    torch.testing.assert_close(out2, expected)
    with pytest.raises(RuntimeError, match="sources not found"):
        multi_scale_deformable_attn(value, shapes, starts, loc, weights, backend="cpu")


def test_explicit_cpu_backend_raises_without_compiler(isolated_loader):
    isolated_loader.setenv("CXX", "/nonexistent/bin/c++")
    value, shapes, starts, loc, weights = make_problem(1, 2, 4, [(3, 4)], 3, 2)
    with pytest.raises(ops.KernelUnavailableError, match="no C\\+\\+ compiler found"):
        multi_scale_deformable_attn(value, shapes, starts, loc, weights, backend="cpu")
    with pytest.warns(func.MSDAFallbackWarning, match="no C\\+\\+ compiler"):
        multi_scale_deformable_attn(value, shapes, starts, loc, weights, backend="auto")


def test_import_loads_nothing():
    code = (
        "import sys, skinformer.layers\n"
        "bad = [m for m in sys.modules if m.startswith('skinformer.ops') or 'cpp_extension' in m"
        " or m.startswith('_C_msda') or m.startswith('skinformer._C')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# --------------------------------------------------------------------------------------------
# MSDeformAttn module


def _module_inputs(N=2, Lq=7, d_model=32, shapes=((6, 8), (3, 4)), seed=0):
    gen = torch.Generator().manual_seed(seed)
    shapes_t = torch.tensor(shapes, dtype=torch.long)
    S = int((shapes_t[:, 0] * shapes_t[:, 1]).sum())
    starts = torch.cat([shapes_t.new_zeros(1), (shapes_t[:, 0] * shapes_t[:, 1]).cumsum(0)[:-1]])
    query = torch.randn(N, Lq, d_model, generator=gen)
    feats = torch.randn(N, S, d_model, generator=gen)
    ref = torch.rand(N, Lq, len(shapes), 2, generator=gen) * 0.8 + 0.1
    return query, ref, feats, shapes_t, starts


class _Capture:
    def __init__(self, keep=None):
        self.keep = keep

    def __call__(self, logits, locations):
        self.logits, self.locations = logits, locations
        if self.keep is None:
            return logits
        mask = torch.full_like(logits, float("-inf"))
        mask[..., self.keep] = 0.0
        return logits + mask


def test_module_output_shape_and_backends_agree():
    torch.manual_seed(0)
    attn = MSDeformAttn(d_model=32, n_levels=2, n_heads=4, n_points=3)
    query, ref, feats, shapes, starts = _module_inputs()
    out = attn(query, ref, feats, shapes, starts)
    assert out.shape == query.shape
    attn.backend = "pytorch"
    torch.testing.assert_close(out, attn(query, ref, feats, shapes, starts), rtol=1e-5, atol=1e-5)
    out.sum().backward()
    assert attn.sampling_offsets.weight.grad is not None
    assert "n_points=3" in repr(attn)


def test_module_initial_sampling_pattern():
    M, L, P = 8, 2, 4
    attn = MSDeformAttn(d_model=32, n_levels=L, n_heads=M, n_points=P)
    assert attn.sampling_offsets.weight.abs().sum() == 0
    assert attn.attention_weights.weight.abs().sum() == 0 and attn.attention_weights.bias.abs().sum() == 0
    query, ref, feats, shapes, starts = _module_inputs()
    capture = _Capture()
    attn(query, ref, feats, shapes, starts, attention_logit_fn=capture)
    assert torch.all(capture.logits == 0)  # uniform attention at init
    for h in range(M):
        theta = 2 * math.pi * h / M
        direction = torch.tensor([math.cos(theta), math.sin(theta)])
        direction = direction / direction.abs().max()
        for level, (H, W) in enumerate(shapes.tolist()):
            for p in range(P):
                expected = ref[:, :, level] + (p + 1) * direction / torch.tensor([W, H])
                torch.testing.assert_close(capture.locations[:, :, h, level, p], expected)


def test_module_attention_logit_fn_selects_one_point():
    torch.manual_seed(0)
    M, L, P, d_model = 2, 2, 3, 16
    attn = MSDeformAttn(d_model=d_model, n_levels=L, n_heads=M, n_points=P)
    with torch.no_grad():  # non-trivial offsets and logits
        attn.sampling_offsets.weight.normal_(0, 0.2)
        attn.attention_weights.weight.normal_(0, 0.5)
    query, ref, feats, shapes, starts = _module_inputs(d_model=d_model)
    keep = 1 * P + 2  # level 1, point 2
    capture = _Capture(keep=keep)
    out = attn(query, ref, feats, shapes, starts, attention_logit_fn=capture)
    # expected: every head samples its single remaining point with weight 1
    N, Lq = query.shape[:2]
    value = attn.value_proj(feats).view(N, -1, M, d_model // M)
    one_hot = torch.zeros(N, Lq, M, L * P)
    one_hot[..., keep] = 1.0
    sampled = multi_scale_deformable_attn_pytorch(value, shapes, starts, capture.locations,
                                                  one_hot.view(N, Lq, M, L, P))
    torch.testing.assert_close(out, attn.output_proj(sampled), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="attention_logit_fn must return logits of shape"):
        attn(query, ref, feats, shapes, starts, attention_logit_fn=lambda lg, loc: lg[..., :1])


def test_module_reference_boxes_and_broadcast():
    torch.manual_seed(0)
    M, L, P, d_model = 2, 2, 4, 16
    attn = MSDeformAttn(d_model=d_model, n_levels=L, n_heads=M, n_points=P)
    with torch.no_grad():
        attn.sampling_offsets.weight.normal_(0, 0.2)
    query, _, feats, shapes, starts = _module_inputs(d_model=d_model)
    N, Lq = query.shape[:2]
    boxes = torch.cat([torch.rand(N, Lq, 2) * 0.6 + 0.2, torch.rand(N, Lq, 2) * 0.3 + 0.05], -1)
    capture = _Capture()
    out_shared = attn(query, boxes, feats, shapes, starts, attention_logit_fn=capture)
    offsets = attn.sampling_offsets(query).view(N, Lq, M, L, P, 2)
    expected = boxes[:, :, None, None, None, :2] + offsets / P * boxes[:, :, None, None, None, 2:] * 0.5
    torch.testing.assert_close(capture.locations, expected)
    # N x Lq x 4 is the same as the per-level N x Lq x L x 4
    per_level = boxes[:, :, None].expand(N, Lq, L, 4)
    torch.testing.assert_close(attn(query, per_level, feats, shapes, starts), out_shared)
    # and 2-d points: N x Lq x 2 equals N x Lq x L x 2
    points = boxes[..., :2]
    torch.testing.assert_close(attn(query, points, feats, shapes, starts),
                               attn(query, points[:, :, None].expand(N, Lq, L, 2), feats, shapes, starts))
    with pytest.raises(ValueError, match="reference_points must have shape"):
        attn(query, boxes[..., :3], feats, shapes, starts)


def test_module_padding_mask_zeroes_values():
    attn = MSDeformAttn(d_model=16, n_levels=2, n_heads=2, n_points=2)
    query, ref, feats, shapes, starts = _module_inputs(d_model=16)
    mask = torch.ones(feats.shape[:2], dtype=torch.bool)
    out = attn(query, ref, feats, shapes, starts, input_padding_mask=mask)
    torch.testing.assert_close(out, torch.zeros_like(out))  # output_proj bias is 0 at init
    with pytest.raises(ValueError, match="d_model"):
        MSDeformAttn(d_model=30, n_heads=8)
