import pytest
import torch

from skinformer.config import get_cfg
from skinformer.layers import PositionEmbeddingSine, ShapeSpec, gen_sineembed_for_position, MLP
from skinformer.modeling import PIXEL_DECODER_REGISTRY, build_pixel_decoder
from skinformer.modeling.pixel_decoder import FPN_FUSIONS, BasePixelDecoder, FPNFusion, MSDeformAttnPixelDecoder

SHAPES = {
    "res2": ShapeSpec(channels=16, stride=4),
    "res3": ShapeSpec(channels=24, stride=8),
    "res4": ShapeSpec(channels=32, stride=16),
    "res5": ShapeSpec(channels=48, stride=32),
}


def _features(b=2, h=64, w=96):
    torch.manual_seed(0)
    return {k: torch.randn(b, v.channels, h // v.stride, w // v.stride) for k, v in SHAPES.items()}


def _msda(**kw):
    args = dict(transformer_in_features=["res3", "res4", "res5"], conv_dim=32, mask_dim=24,
                transformer_nheads=4, transformer_dim_feedforward=64, transformer_enc_layers=2,
                transformer_n_points=2)
    args.update(kw)
    return MSDeformAttnPixelDecoder(SHAPES, **args)


def test_registered():
    assert "MSDeformAttnPixelDecoder" in PIXEL_DECODER_REGISTRY
    assert "BasePixelDecoder" in PIXEL_DECODER_REGISTRY


@pytest.mark.parametrize("fusion", sorted(FPN_FUSIONS))
def test_msdeformattn_shapes_and_grads(fusion):
    dec = _msda(fpn_fusion=fusion)
    feats = _features()
    mask_features, ms = dec.forward_features(feats)
    assert mask_features.shape == (2, 24, 16, 24)
    # low resolution first: 1/32, 1/16, 1/8
    assert [tuple(x.shape) for x in ms] == [(2, 32, 2, 3), (2, 32, 4, 6), (2, 32, 8, 12)]
    (mask_features.sum() + sum(x.sum() for x in ms)).backward()
    assert all(p.grad is not None for n, p in dec.named_parameters() if p.requires_grad and "level_embed" not in n)


def test_fusion_modes_differ_only_in_the_output_conv():
    s, c = _msda(fpn_fusion="SUM"), _msda(fpn_fusion="CONCAT")
    assert s.fpn[0].output_conv.in_channels == 32 and c.fpn[0].output_conv.in_channels == 64
    assert type(s.fpn[0]) is type(c.fpn[0]) is FPNFusion
    assert {k for k in s.state_dict()} == {k for k in c.state_dict()}


def test_fpn_fusion_concat_order_and_sum():
    f = FPNFusion(4, 4, norm="", fusion="CONCAT")
    torch.nn.init.zeros_(f.output_conv.weight)
    # the output conv only sees the upsampled input channel block -> the lateral part has no effect
    with torch.no_grad():
        f.output_conv.weight[:, 4:, 1, 1] = torch.eye(4)
    x, coarse = torch.randn(1, 4, 8, 8), torch.rand(1, 4, 4, 4)
    up = torch.nn.functional.interpolate(coarse, size=(8, 8), mode="bilinear", align_corners=False)
    torch.testing.assert_close(f(x, coarse), torch.relu(up))
    with pytest.raises(ValueError, match="FPN_FUSION"):
        FPNFusion(4, 4, fusion="MAX")


def test_extra_levels():
    dec = _msda(total_num_feature_levels=4)
    _, ms = dec.forward_features(_features())
    assert [tuple(x.shape[-2:]) for x in ms] == [(1, 2), (2, 3), (4, 6)]


def test_bad_features_named_in_error():
    with pytest.raises(ValueError, match="DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES"):
        _msda(transformer_in_features=["res3", "res6"])


def test_base_pixel_decoder():
    dec = BasePixelDecoder(SHAPES, conv_dim=32, mask_dim=24, fusion="CONCAT")
    mask_features, ms = dec.forward_features(_features())
    assert mask_features.shape == (2, 24, 16, 24)
    assert [tuple(x.shape[-2:]) for x in ms] == [(2, 3), (4, 6), (8, 12)]


@pytest.mark.parametrize("name", ["MSDeformAttnPixelDecoder", "BasePixelDecoder"])
def test_build_from_config(name):
    cfg = get_cfg()
    cfg.MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME = name
    cfg.MODEL.SEM_SEG_HEAD.CONVS_DIM = 32
    cfg.MODEL.SEM_SEG_HEAD.MASK_DIM = 32
    cfg.MODEL.SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS = 1
    cfg.MODEL.SEM_SEG_HEAD.FPN_FUSION = "CONCAT"
    dec = build_pixel_decoder(cfg, SHAPES)
    mask_features, ms = dec.forward_features(_features(1, 64, 64))
    assert mask_features.shape == (1, 32, 16, 16) and len(ms) == 3
    cfg.MODEL.SEM_SEG_HEAD.IN_FEATURES = ["res2", "res9"]
    with pytest.raises(ValueError, match="IN_FEATURES"):
        build_pixel_decoder(cfg, SHAPES)


def test_position_embedding_sine():
    pe = PositionEmbeddingSine(8, normalize=True)
    out = pe(torch.zeros(2, 3, 5, 7))
    assert out.shape == (2, 16, 5, 7)
    # channel 0 = sin of the normalised y coordinate at the base frequency; y part first
    y = torch.arange(1, 6, dtype=torch.float32) / 5 * 2 * torch.pi
    torch.testing.assert_close(out[0, 0, :, 0], torch.sin(y), atol=1e-5, rtol=0)
    x = torch.arange(1, 8, dtype=torch.float32) / 7 * 2 * torch.pi
    torch.testing.assert_close(out[0, 8, 0, :], torch.sin(x), atol=1e-5, rtol=0)


def test_gen_sineembed_for_position():
    pts = torch.rand(3, 5, 2)
    e = gen_sineembed_for_position(pts, 16)
    assert e.shape == (3, 5, 32)
    # [y | x]: the first half depends only on y
    pts2 = pts.clone()
    pts2[..., 0] += 0.1
    e2 = gen_sineembed_for_position(pts2, 16)
    torch.testing.assert_close(e[..., :16], e2[..., :16])
    assert not torch.allclose(e[..., 16:], e2[..., 16:])
    boxes = torch.rand(4, 4)
    eb = gen_sineembed_for_position(boxes, 16)
    assert eb.shape == (4, 64)
    torch.testing.assert_close(eb[:, :32], gen_sineembed_for_position(boxes[:, :2], 16))
    with pytest.raises(ValueError):
        gen_sineembed_for_position(torch.rand(3, 3))


def test_mlp():
    m = MLP(8, 16, 4, 3)
    assert m(torch.randn(2, 5, 8)).shape == (2, 5, 4)
    assert len(m.layers) == 3
    with pytest.raises(ValueError):
        MLP(8, 16, 4, 0)
