import pytest
import torch

from skinformer.config import get_cfg
from skinformer.layers import ShapeSpec
from skinformer.modeling.sem_seg_heads import (
    SEM_SEG_HEAD_REGISTRY, DeepLabV3PlusHead, FPNHead, SegFormerHead, UNetHead, build_sem_seg_head,
)

SHAPES = {"res2": ShapeSpec(channels=16, stride=4), "res3": ShapeSpec(channels=24, stride=8),
          "res4": ShapeSpec(channels=32, stride=16), "res5": ShapeSpec(channels=40, stride=32)}


def _features(b=2, h=64, w=96, shapes=SHAPES):
    return {k: torch.randn(b, s.channels, h // s.stride, w // s.stride) for k, s in shapes.items()}


@pytest.mark.parametrize("name", ["FPNHead", "DeepLabV3PlusHead", "UNetHead", "SegFormerHead"])
@pytest.mark.parametrize("num_classes", [1, 3])
def test_head_output_shape_from_cfg(name, num_classes):
    cfg = get_cfg()
    cfg.MODEL.SEM_SEG_HEAD.NAME = name
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = num_classes
    cfg.MODEL.SEM_SEG_HEAD.CONVS_DIM = 32
    cfg.MODEL.SEM_SEG_HEAD.ASPP_CHANNELS = 32
    if name == "DeepLabV3PlusHead":
        cfg.MODEL.SEM_SEG_HEAD.IN_FEATURES = ["res2", "res5"]
    head = build_sem_seg_head(cfg, SHAPES)
    assert head.common_stride == 4
    out = head(_features())
    assert out.shape == (2, num_classes + 1, 16, 24)
    out.mean().backward()
    assert all(p.grad is not None for p in head.parameters() if p.requires_grad)


def test_deeplab_at_output_stride_16_with_two_projections():
    shapes = dict(SHAPES)
    shapes["res5"] = ShapeSpec(channels=40, stride=16)  # RES5_DILATION 2
    head = DeepLabV3PlusHead(shapes, num_classes=2, in_feature="res5", project_features=["res2", "res3"],
                             project_channels=[8, 12], aspp_channels=16, conv_dims=16, norm="GN").train()
    out = head(_features(b=1, shapes=shapes))  # batch 1 in training: the pooling branch has no BN
    assert out.shape == (1, 2, 16, 24)
    assert head.project_features == ["res3", "res2"]


def test_unet_to_stride_1_with_attention_and_residual():
    head = UNetHead(SHAPES, num_classes=2, decoder_channels=[32, 16, 16, 8, 8], common_stride=1, norm="BN",
                    attention_gates=True, residual=True)
    assert len(head.extra_blocks) == 2
    assert head(_features()).shape == (2, 2, 64, 96)


def test_unet_attention_gates_are_used(monkeypatch):
    from skinformer.modeling.sem_seg_heads import AttentionGate

    calls = []
    orig = AttentionGate.forward

    def counting(self, skip, gate):
        out = orig(self, skip, gate)
        calls.append((skip.shape, out.shape))
        assert out.shape == skip.shape
        return out

    monkeypatch.setattr(AttentionGate, "forward", counting)
    UNetHead(SHAPES, num_classes=2, attention_gates=True)(_features())
    assert len(calls) == 3
    UNetHead(SHAPES, num_classes=2, attention_gates=False)(_features())
    assert len(calls) == 3


def test_unet_bad_common_stride_and_channels():
    with pytest.raises(ValueError, match="COMMON_STRIDE"):
        UNetHead(SHAPES, num_classes=2, common_stride=3)
    with pytest.raises(ValueError, match="UNET_DECODER_CHANNELS"):
        UNetHead(SHAPES, num_classes=2, decoder_channels=[8, 8], common_stride=4)


def test_fpn_and_segformer_on_subset():
    shapes = {k: SHAPES[k] for k in ["res3", "res4", "res5"]}
    assert FPNHead(shapes, num_classes=2, conv_dims=32)(_features(shapes=shapes)).shape == (2, 2, 8, 12)
    assert SegFormerHead(shapes, num_classes=2, embed_dim=32)(_features(shapes=shapes)).shape == (2, 2, 8, 12)


def test_build_errors():
    cfg = get_cfg()
    cfg.MODEL.SEM_SEG_HEAD.NAME = "NoSuchHead"
    with pytest.raises(KeyError, match="NoSuchHead"):
        build_sem_seg_head(cfg, SHAPES)
    cfg.MODEL.SEM_SEG_HEAD.NAME = "FPNHead"
    cfg.MODEL.SEM_SEG_HEAD.IN_FEATURES = ["res1", "res2"]
    with pytest.raises(ValueError, match="res1"):
        build_sem_seg_head(cfg, SHAPES)


def test_registry_names():
    assert {"FPNHead", "DeepLabV3PlusHead", "UNetHead", "SegFormerHead"} <= {k for k, _ in SEM_SEG_HEAD_REGISTRY}
