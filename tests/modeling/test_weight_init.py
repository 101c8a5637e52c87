"""MODEL.INIT: each method's statistics on new layers, the backbone left alone, "none" a no-op."""
import math

import pytest
import torch

from skinformer.config import get_cfg
from skinformer.modeling import build_model
from skinformer.modeling.weight_init import init_new_layers


def _cfg(method="none", include_backbone=False):
    cfg = get_cfg()
    cfg.MODEL.META_ARCHITECTURE = "PerPixelSegmentor"
    cfg.MODEL.BACKBONE.NAME = "TimmBackbone"
    cfg.MODEL.TIMM.NAME = "resnet10t"
    cfg.MODEL.SEM_SEG_HEAD.NAME = "UNetHead"
    cfg.MODEL.SEM_SEG_HEAD.CONVS_DIM = 16
    cfg.MODEL.INIT.METHOD = method
    cfg.MODEL.INIT.INCLUDE_BACKBONE = include_backbone
    return cfg


def _convs(model, backbone):
    return [m for n, m in model.named_modules()
            if isinstance(m, torch.nn.Conv2d) and (n.startswith("backbone") == backbone)]


def test_none_is_a_no_op_and_backbone_excluded():
    torch.manual_seed(0)
    ref = build_model(_cfg("none"))
    torch.manual_seed(0)
    xav = build_model(_cfg("xavier"))
    for a, b in zip(_convs(ref, True), _convs(xav, True)):
        torch.testing.assert_close(a.weight, b.weight)  # backbone untouched
    assert any(not torch.equal(a.weight, b.weight) for a, b in zip(_convs(ref, False), _convs(xav, False)))
    torch.manual_seed(0)
    again = build_model(_cfg("none"))
    for a, b in zip(ref.parameters(), again.parameters()):
        torch.testing.assert_close(a, b)


def _big_conv():
    return torch.nn.Sequential(torch.nn.Conv2d(64, 128, 3))


@pytest.mark.parametrize("method,expected_std", [
    ("xavier", math.sqrt(2.0 / (64 * 9 + 128 * 9))),
    ("kaiming", math.sqrt(2.0 / (128 * 9))),
    ("normal", 0.02),
])
def test_statistics(method, expected_std):
    torch.manual_seed(0)
    m = _big_conv()
    assert init_new_layers(m, method) == 1
    assert m[0].weight.std().item() == pytest.approx(expected_std, rel=0.03)
    assert m[0].bias.abs().max() == 0


def test_orthogonal_rows():
    m = _big_conv()
    init_new_layers(m, "orthogonal")
    w = m[0].weight.flatten(1)  # 128 × 576: orthonormal rows
    torch.testing.assert_close(w @ w.T, torch.eye(128), atol=1e-4, rtol=0)


def test_include_backbone_and_bad_method():
    torch.manual_seed(0)
    ref = build_model(_cfg("none"))
    torch.manual_seed(0)
    inc = build_model(_cfg("orthogonal", include_backbone=True))
    assert any(not torch.equal(a.weight, b.weight) for a, b in zip(_convs(ref, True), _convs(inc, True)))
    with pytest.raises(ValueError, match="MODEL.INIT.METHOD"):
        build_model(_cfg("lecun"))
