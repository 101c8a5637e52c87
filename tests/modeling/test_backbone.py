import pytest
import torch
import torch.nn as nn

from skinformer.checkpoint import CheckpointError
from skinformer.config import get_cfg
from skinformer.layers import FrozenBatchNorm2d
from skinformer.modeling.backbone import (
    BACKBONE_REGISTRY, ResNet, TimmBackbone, build_backbone, convert_torchvision_resnet,
)


def _check_pyramid(backbone, x, expected_channels=None):
    out = backbone(x)
    shapes = backbone.output_shape()
    assert list(out) == ["res2", "res3", "res4", "res5"]
    for name, stride in zip(["res2", "res3", "res4", "res5"], [4, 8, 16, 32]):
        assert shapes[name].stride == stride
        assert out[name].shape == (x.shape[0], shapes[name].channels, x.shape[2] // stride, x.shape[3] // stride)
    if expected_channels is not None:
        assert [shapes[n].channels for n in ["res2", "res3", "res4", "res5"]] == expected_channels


# ---------------------------------------------------------------- TimmBackbone
def test_timm_resnet18_from_cfg():
    cfg = get_cfg()
    cfg.MODEL.BACKBONE.NAME = "TimmBackbone"
    cfg.MODEL.TIMM.NAME = "resnet18"
    backbone = build_backbone(cfg)
    assert isinstance(backbone, TimmBackbone)
    _check_pyramid(backbone, torch.randn(2, 3, 64, 96), [64, 128, 256, 512])


@pytest.mark.parametrize("name,channels", [("efficientnet_b0", [24, 40, 112, 320]),
                                           ("convnext_atto", [40, 80, 160, 320])])
def test_timm_other_families(name, channels):
    backbone = TimmBackbone(model_name=name).eval()
    _check_pyramid(backbone, torch.randn(1, 3, 64, 64), channels)


def test_timm_subset_of_features():
    backbone = TimmBackbone(model_name="resnet18", out_features=["res3", "res5"])
    out = backbone(torch.randn(1, 3, 64, 64))
    assert list(out) == ["res3", "res5"] and out["res3"].shape[1] == 128 and out["res5"].shape[-1] == 2


def test_timm_without_stride4_is_a_clear_error():
    with pytest.raises(ValueError, match="reductions"):
        TimmBackbone(model_name="vit_tiny_patch16_224")


def test_timm_unknown_name():
    with pytest.raises(ValueError, match="not a timm model"):
        TimmBackbone(model_name="no_such_model_xyz")


@pytest.mark.parametrize("wrap", [None, "model", "state_dict"])
def test_timm_pretrained_file_round_trip(tmp_path, wrap):
    import timm

    torch.manual_seed(0)
    # A full (classifier) timm model, as a user's downloaded ImageNet checkpoint would be.
    src = timm.create_model("resnet18", pretrained=False).eval()
    with torch.no_grad():  # non-trivial BN statistics
        for m in src.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    sd = src.state_dict()
    path = tmp_path / "r18.pth"
    torch.save(sd if wrap is None else {wrap: sd}, path)

    cfg = get_cfg()
    cfg.MODEL.TIMM.NAME = "resnet18"
    cfg.MODEL.TIMM.PRETRAINED_FILE = str(path)
    loaded = build_backbone(cfg).eval()
    fresh = TimmBackbone(model_name="resnet18").eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        out = loaded(x)
        other = fresh(x)
        # The loaded backbone reproduces the source network's layer1 / layer4 features ...
        r2 = src.layer1(src.maxpool(src.act1(src.bn1(src.conv1(x)))))
        r5 = src.layer4(src.layer3(src.layer2(r2)))
    torch.testing.assert_close(out["res2"], r2)
    torch.testing.assert_close(out["res5"], r5)
    # ... and differs from a randomly initialised one (the load did something).
    assert not torch.allclose(out["res5"], other["res5"])


def test_timm_pretrained_file_reports_missing_and_unexpected(tmp_path, caplog):
    import timm

    sd = timm.create_model("resnet18", pretrained=False).state_dict()
    del sd["layer4.1.conv2.weight"]
    path = tmp_path / "partial.pth"
    torch.save(sd, path)
    from skinformer.modeling.backbone import load_timm_state_dict

    model = timm.create_model("resnet18", pretrained=False, features_only=True)
    missing, unexpected = load_timm_state_dict(model, str(path))
    assert missing == ["layer4.1.conv2.weight"]
    assert set(unexpected) == {"fc.weight", "fc.bias"}


def test_timm_pretrained_file_not_a_state_dict(tmp_path):
    path = tmp_path / "bad.pth"
    torch.save([1, 2, 3], path)
    with pytest.raises(CheckpointError, match="MODEL.TIMM.PRETRAINED_FILE.*bad.pth.*does not contain a state dict"):
        TimmBackbone(model_name="resnet18", pretrained_file=str(path))


def test_timm_pretrained_file_flattened_names(tmp_path):
    """FeatureListNet renames 'stages.0' to 'stages_0': full-model keys must still load."""
    import timm

    src = timm.create_model("convnext_atto", pretrained=False)
    path = tmp_path / "cn.pth"
    torch.save(src.state_dict(), path)
    from skinformer.modeling.backbone import load_timm_state_dict

    model = timm.create_model("convnext_atto", pretrained=False, features_only=True)
    missing, _ = load_timm_state_dict(model, str(path))
    assert missing == []
    torch.testing.assert_close(model.stages_2.blocks[0].conv_dw.weight, src.stages[2].blocks[0].conv_dw.weight)


@pytest.mark.parametrize("freeze_at,frozen_prefixes,trainable_prefixes", [
    (0, [], ["conv1", "layer1", "layer4"]),
    (1, ["conv1", "bn1"], ["layer1", "layer2"]),
    (3, ["conv1", "layer1", "layer2"], ["layer3", "layer4"]),
])
def test_timm_freeze_at(freeze_at, frozen_prefixes, trainable_prefixes):
    backbone = TimmBackbone(model_name="resnet18", freeze_at=freeze_at)
    for name, p in backbone.model.named_parameters():
        if any(name.startswith(f + ".") for f in frozen_prefixes):
            assert not p.requires_grad, name
        if any(name.startswith(f + ".") for f in trainable_prefixes):
            assert p.requires_grad, name
    if freeze_at >= 1:
        # BatchNorms of frozen stages are frozen too (statistics do not move in train mode).
        assert isinstance(backbone.model.bn1, FrozenBatchNorm2d)
        assert not isinstance(backbone.model.layer4[0].bn1, FrozenBatchNorm2d)


def test_timm_freeze_at_efficientnet_stem():
    backbone = TimmBackbone(model_name="efficientnet_b0", freeze_at=2)
    grads = {n: p.requires_grad for n, p in backbone.model.named_parameters()}
    assert not grads["conv_stem.weight"] and not grads["blocks.1.0.conv_pw.weight"]
    assert grads["blocks.2.0.conv_pw.weight"]


def test_timm_freeze_bn():
    from timm.layers import BatchNormAct2d

    for name in ["resnet18", "efficientnet_b0"]:
        torch.manual_seed(0)
        backbone = TimmBackbone(model_name=name, freeze_bn=False).eval()
        x = torch.randn(1, 3, 64, 64)
        with torch.no_grad():
            ref = backbone(x)["res5"]
        backbone.model = backbone.model  # same weights, now frozen
        from skinformer.modeling.backbone import freeze_batchnorm

        backbone.model = freeze_batchnorm(backbone.model)
        assert not any(isinstance(m, nn.BatchNorm2d) and not isinstance(m, BatchNormAct2d) and type(m) is nn.BatchNorm2d
                       for m in backbone.modules())
        assert not any(type(m) is BatchNormAct2d for m in backbone.modules())
        backbone.train()  # frozen BN ignores the mode: same output, activations kept
        with torch.no_grad():
            torch.testing.assert_close(backbone(x)["res5"], ref)

    built = TimmBackbone(model_name="resnet18", freeze_bn=True)
    assert isinstance(built.model.layer1[0].bn1, FrozenBatchNorm2d)


# ---------------------------------------------------------------- detectron2-layout ResNet
def _resnet_cfg(depth, norm="FrozenBN"):
    cfg = get_cfg()
    cfg.MODEL.BACKBONE.NAME = "build_resnet_backbone"
    cfg.MODEL.RESNETS.DEPTH = depth
    cfg.MODEL.RESNETS.NORM = norm
    return cfg


@pytest.mark.parametrize("depth,channels", [(18, [64, 128, 256, 512]), (50, [256, 512, 1024, 2048])])
def test_resnet_shapes(depth, channels):
    backbone = build_backbone(_resnet_cfg(depth)).eval()
    assert isinstance(backbone, ResNet)
    _check_pyramid(backbone, torch.randn(1, 3, 64, 64), channels)


def test_resnet50_d2_parameter_names():
    backbone = build_backbone(_resnet_cfg(50))
    keys = set(backbone.state_dict())
    for k in ["stem.conv1.weight", "stem.conv1.norm.weight", "stem.conv1.norm.running_var",
              "res2.0.conv1.weight", "res2.0.conv1.norm.bias", "res2.0.shortcut.weight", "res2.0.shortcut.norm.weight",
              "res3.0.conv3.norm.running_mean", "res5.2.conv3.weight"]:
        assert k in keys, k
    assert "res2.1.shortcut.weight" not in keys
    # Same size as torchvision's resnet50 without the classifier (FrozenBN affine terms are buffers).
    n = sum(p.numel() for p in backbone.parameters())
    n += sum(b.numel() for name, b in backbone.named_buffers() if name.endswith(("norm.weight", "norm.bias")))
    assert n == 25557032 - 2048 * 1000 - 1000


def test_resnet_dilation_and_stride_in_1x1():
    cfg = _resnet_cfg(50)
    cfg.MODEL.RESNETS.RES5_DILATION = 2
    cfg.MODEL.RESNETS.STRIDE_IN_1X1 = True
    backbone = build_backbone(cfg).eval()
    assert backbone.output_shape()["res5"].stride == 16
    assert backbone(torch.randn(1, 3, 64, 64))["res5"].shape[-2:] == (4, 4)
    assert backbone.res3[0].conv1.stride == (2, 2) and backbone.res3[0].conv2.stride == (1, 1)
    assert backbone.res5[0].conv2.dilation == (2, 2)


@pytest.mark.parametrize("norm", ["BN", "GN", "FrozenBN"])
def test_resnet_norms_and_freeze_at(norm):
    cfg = _resnet_cfg(18, norm)
    cfg.MODEL.BACKBONE.FREEZE_AT = 2
    backbone = build_backbone(cfg)
    assert all(not p.requires_grad for p in backbone.stem.parameters())
    assert all(not p.requires_grad for p in backbone.res2.parameters())
    assert all(p.requires_grad for p in backbone.res3.parameters())
    if norm == "BN":
        assert isinstance(backbone.res2[0].conv1.norm, FrozenBatchNorm2d)
        assert isinstance(backbone.res3[0].conv1.norm, nn.BatchNorm2d)
    out = backbone(torch.randn(2, 3, 32, 32))
    out["res5"].sum().backward()
    assert backbone.res3[0].conv1.weight.grad is not None and backbone.stem.conv1.weight.grad is None


@pytest.mark.parametrize("depth", [18, 50])
def test_convert_torchvision_resnet_equivalence(depth):
    import torchvision

    torch.manual_seed(0)
    tv = getattr(torchvision.models, f"resnet{depth}")(weights=None).eval()
    with torch.no_grad():  # non-trivial BN statistics and affine parameters
        for m in tv.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    converted = convert_torchvision_resnet(tv.state_dict())
    assert "fc.weight" not in converted and "stem.conv1.weight" in converted
    d2 = build_backbone(_resnet_cfg(depth, "FrozenBN")).eval()
    incompatible = d2.load_state_dict(converted, strict=False)
    assert incompatible.missing_keys == []
    assert all(k.endswith("num_batches_tracked") for k in incompatible.unexpected_keys)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        y = tv.maxpool(tv.relu(tv.bn1(tv.conv1(x))))
        r2 = tv.layer1(y)
        r5 = tv.layer4(tv.layer3(tv.layer2(r2)))
        out = d2(x)
    # FrozenBN folds the statistics into one scale/shift: equal up to float32 rounding, which
    # grows with the depth of an unnormalised random network, so tolerances scale with magnitude.
    for ours, ref in [(out["res2"], r2), (out["res5"], r5)]:
        torch.testing.assert_close(ours, ref, rtol=1e-3, atol=1e-4 * float(ref.abs().max()))


def test_convert_torchvision_resnet_strips_module_prefix():
    sd = {"module.conv1.weight": torch.zeros(1), "module.layer2.0.downsample.1.running_var": torch.zeros(1),
          "module.fc.bias": torch.zeros(1)}
    assert set(convert_torchvision_resnet(sd)) == {"stem.conv1.weight", "res3.0.shortcut.norm.running_var"}


def test_resnet_bad_depth():
    with pytest.raises(ValueError, match="DEPTH"):
        build_backbone(_resnet_cfg(42))


def test_registered():
    assert "TimmBackbone" in BACKBONE_REGISTRY and "build_resnet_backbone" in BACKBONE_REGISTRY
