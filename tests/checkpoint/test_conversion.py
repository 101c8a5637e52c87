"""Foreign weights: timm/torchvision state dicts, detectron2 .pkl and wrappers, suffix matching."""
import logging
import pickle

import numpy as np
import pytest
import torch
import torch.nn as nn

from skinformer.checkpoint import DetectionCheckpointer, align_and_update_state_dicts, load_pretrained_backbone


class TVNet(nn.Module):
    """torchvision/timm-like classifier: conv1, bn1, layer1.0.conv1, fc."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3)
        self.bn1 = nn.BatchNorm2d(4)
        self.layer1 = nn.Sequential(nn.Sequential())
        self.layer1[0].conv1 = nn.Conv2d(4, 4, 1)
        self.fc = nn.Linear(4, 10)


class Body(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3)
        self.bn1 = nn.BatchNorm2d(4)
        self.layer1 = nn.Sequential(nn.Sequential())
        self.layer1[0].conv1 = nn.Conv2d(4, 4, 1)


class Seg(nn.Module):
    """A segmentation model whose head reuses local names of the backbone (conv1)."""

    def __init__(self):
        super().__init__()
        self.backbone = nn.Module()
        self.backbone.body = Body()
        self.head = nn.Module()
        self.head.conv1 = nn.Conv2d(3, 4, 3)


@pytest.fixture
def conv_log(caplog):
    lg = logging.getLogger("skinformer.checkpoint.conversion")
    lg.addHandler(caplog.handler)
    caplog.set_level(logging.INFO, logger="skinformer.checkpoint.conversion")
    yield caplog
    lg.removeHandler(caplog.handler)


def _check_backbone_loaded(model, src):
    b = model.backbone.body
    assert torch.equal(b.conv1.weight, src.conv1.weight)
    assert torch.equal(b.bn1.running_var, src.bn1.running_var)
    assert torch.equal(b.layer1[0].conv1.weight, src.layer1[0].conv1.weight)


def test_timm_state_dict_maps_to_backbone_only(tmp_path, conv_log):
    torch.manual_seed(0)
    src = TVNet()
    src.bn1.running_var.fill_(3.0)
    f = tmp_path / "resnet_tv.pth"
    torch.save(src.state_dict(), f)
    model = Seg()
    head_before = model.head.conv1.weight.clone()
    DetectionCheckpointer(model).load(str(f))
    _check_backbone_loaded(model, src)
    assert torch.equal(model.head.conv1.weight, head_before)  # never matched into the head
    table = "\n".join(r.getMessage() for r in conv_log.records)
    assert "backbone.body.layer1.0.conv1.weight" in table and "fc.weight" in table  # matched + unused


def test_detectron2_pkl_and_wrapper(tmp_path):
    torch.manual_seed(1)
    src = TVNet()
    f = tmp_path / "R-50.pkl"
    with open(f, "wb") as fh:
        pickle.dump({"model": {k: v.numpy() for k, v in src.state_dict().items()}, "__author__": "d2"}, fh)
    model = Seg()
    DetectionCheckpointer(model).load(str(f))
    _check_backbone_loaded(model, src)

    g = tmp_path / "wrapped.pth"
    torch.save({"state_dict": src.state_dict(), "epoch": 3}, g)
    model = Seg()
    DetectionCheckpointer(model).load(str(g))
    _check_backbone_loaded(model, src)


def test_pkl_with_code_is_refused(tmp_path):
    f = tmp_path / "evil.pkl"
    with open(f, "wb") as fh:
        pickle.dump({"model": {"x": np.zeros(1)}, "f": print}, fh)
    with pytest.raises(Exception, match="evil.pkl"):
        DetectionCheckpointer(Seg()).load(str(f))


def test_longest_suffix_and_shape_mismatch():
    model_sd = {"a.b.conv.weight": torch.zeros(2), "a.conv.weight": torch.zeros(3), "x.y": torch.zeros(1)}
    ckpt = {"b.conv.weight": np.ones(2), "conv.weight": torch.ones(3), "y": torch.ones(5)}
    out = align_and_update_state_dicts(model_sd, ckpt, restrict_to=None)
    assert set(out) == {"a.b.conv.weight", "a.conv.weight"}  # "x.y" skipped: shape mismatch
    assert torch.equal(out["a.b.conv.weight"], torch.ones(2))


def test_ambiguous_match_is_an_error():
    model_sd = {"a.conv.weight": torch.zeros(2), "b.conv.weight": torch.zeros(2)}
    with pytest.raises(ValueError, match="Ambiguous"):
        align_and_update_state_dicts(model_sd, {"conv.weight": torch.ones(2)}, restrict_to=None)


def test_load_pretrained_backbone(tmp_path):
    src = TVNet()
    f = tmp_path / "w.pth"
    torch.save({"model": src.state_dict()}, f)
    body = Body()
    missing, unused = load_pretrained_backbone(body, str(f))
    assert missing == [] and unused == ["fc.bias", "fc.weight"]
    assert torch.equal(body.conv1.weight, src.conv1.weight)


def test_torchvision_resnet_weights_load_into_detectron2_layout_resnet():
    import torchvision

    from skinformer.checkpoint.conversion import align_and_update_state_dicts
    from skinformer.config import get_cfg
    from skinformer.modeling.backbone.build import build_backbone

    cfg = get_cfg()
    cfg.MODEL.BACKBONE.NAME = "build_resnet_backbone"
    cfg.MODEL.RESNETS.DEPTH = 18
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    cfg.MODEL.RESNETS.NORM = "BN"
    backbone = build_backbone(cfg)
    model_sd = {f"backbone.{k}": v for k, v in backbone.state_dict().items()}
    tv = torchvision.models.resnet18().state_dict()
    matched = align_and_update_state_dicts(model_sd, tv)
    conv_keys = [k for k in model_sd if k.endswith(".weight") and "conv" in k and "norm" not in k]
    assert conv_keys and all(k in matched for k in conv_keys)
    assert torch.equal(matched["backbone.stem.conv1.weight"], tv["conv1.weight"])
