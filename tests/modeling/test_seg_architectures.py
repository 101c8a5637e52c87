"""Seed architectures: classic / residual U-Net from scratch, bilinear vs transposed up-sampling,
the Inception-v3 U-Net's dilated branches, SegFormer's MiT-B0..B5 with Hugging Face weight names."""
import os

import pytest
import torch

from skinformer.config import get_cfg
from skinformer.modeling import build_model
from skinformer.modeling.backbone import MiTBackbone, UNetEncoder, load_hf_mit_state_dict
from skinformer.modeling.backbone.mit import MIT_VARIANTS


def _batch(h=64, w=64, k=2):
    g = torch.Generator().manual_seed(0)
    return [{"image": torch.randint(0, 255, (3, h, w), dtype=torch.uint8, generator=g),
             "sem_seg": torch.randint(0, k + 1, (h, w), generator=g), "height": h, "width": w}
            for _ in range(2)]


def _classic_unet_cfg(upsample="bilinear", residual=False):
    cfg = get_cfg()
    cfg.MODEL.BACKBONE.NAME = "UNetEncoder"
    cfg.MODEL.UNET_ENCODER.CHANNELS = [8, 16, 32, 64, 128]
    cfg.MODEL.UNET_ENCODER.RESIDUAL = residual
    h = cfg.MODEL.SEM_SEG_HEAD
    h.NAME, h.NUM_CLASSES, h.COMMON_STRIDE = "UNetHead", 2, 1
    h.IN_FEATURES = ["res0", "res1", "res2", "res3", "res4"]
    h.UNET_DECODER_CHANNELS = [64, 32, 16, 8]
    h.UNET_UPSAMPLE, h.UNET_RESIDUAL = upsample, residual
    return cfg


@pytest.mark.parametrize("upsample,residual", [("bilinear", False), ("transposed", False), ("transposed", True)])
def test_classic_unet_trains_from_scratch(upsample, residual):
    torch.manual_seed(0)
    model = build_model(_classic_unet_cfg(upsample, residual))
    assert isinstance(model.backbone, UNetEncoder)
    shapes = model.backbone.output_shape()
    assert [(s.channels, s.stride) for s in shapes.values()] == [(8, 1), (16, 2), (32, 4), (64, 8), (128, 16)]
    n_t = sum(isinstance(m, torch.nn.ConvTranspose2d) for m in model.modules())
    assert n_t == (4 if upsample == "transposed" else 0)
    if residual:
        assert all(b.shortcut is not None for b in model.backbone.levels)
    model.train()
    losses = model(_batch(48, 40))  # padded to a multiple of 16
    sum(losses.values()).backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    model.eval()
    with torch.no_grad():
        assert model(_batch(50, 42))[0]["sem_seg"].shape == (2, 50, 42)


def test_transposed_upsampling_is_learned():
    """The transposed conv is a trained layer: changing its weights changes the output, while the
    bilinear decoder has no such parameters."""
    torch.manual_seed(0)
    model = build_model(_classic_unet_cfg("transposed")).eval()
    x = _batch()[:1]
    with torch.no_grad():
        a = model(x)[0]["sem_seg"]
        model.sem_seg_head.ups[0].weight.mul_(3.0)
        b = model(x)[0]["sem_seg"]
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError, match="UNET_UPSAMPLE"):
        cfg = _classic_unet_cfg("nearest")
        build_model(cfg)


def test_inception_unet_dilated_branches():
    cfg = get_cfg()
    cfg.MODEL.TIMM.NAME = "inception_v3"
    cfg.MODEL.TIMM.OUT_FEATURES = ["res1", "res2", "res3"]
    h = cfg.MODEL.SEM_SEG_HEAD
    h.NAME, h.NUM_CLASSES, h.COMMON_STRIDE, h.IN_FEATURES = "UNetHead", 6, 1, ["res1", "res2", "res3"]
    h.UNET_UPSAMPLE = "transposed"
    h.UNET_DILATED_BRANCHES.FEATURE = "res2"
    h.UNET_DILATED_BRANCHES.CHANNELS = 16
    model = build_model(cfg)
    head = model.sem_seg_head
    assert [b[0].dilation for b in head.branches.branches] == [(2, 2), (3, 3), (4, 4)]
    # 192-ch stride-4 features -> three stride-2 branches joined to the 288-ch stride-8 stage
    assert head.blocks[0].conv1.in_channels == 288 + 3 * 16 + 192
    model.train()
    losses = model(_batch(64, 64, 6))
    assert all(torch.isfinite(v) for v in losses.values())
    h.UNET_DILATED_BRANCHES.FEATURE = "res3"  # nothing at stride 16 to join
    with pytest.raises(ValueError, match="stride 16"):
        build_model(cfg)


def test_mit_variants_match_published_encoder_sizes():
    # SegFormer paper, Table 1: encoder parameters (M)
    published = {"b0": 3.4, "b1": 13.1, "b2": 24.2, "b3": 44.0, "b4": 60.8, "b5": 81.4}
    for v, p in published.items():
        n = sum(t.numel() for t in MiTBackbone(variant=v, drop_path_rate=0.0).parameters()) / 1e6
        assert abs(n - p) < 0.35, (v, n)
    out = MiTBackbone(variant="b0").eval()(torch.zeros(1, 3, 64, 96))
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "res2": (1, 32, 16, 24), "res3": (1, 64, 8, 12), "res4": (1, 160, 4, 6), "res5": (1, 256, 2, 3)}


def _hf_mit_state_dict(hidden, depths, in_ch=3):
    """A state dict in the Hugging Face ``SegformerForImageClassification`` layout, written from the
    HF naming scheme (not from our module), with random values."""
    g = torch.Generator().manual_seed(1)
    sd = {}

    def t(name, *shape):
        sd["segformer.encoder." + name] = torch.randn(*shape, generator=g)

    for i, (c, d) in enumerate(zip(hidden, depths)):
        k, cin, sr = (7, 3, 3, 3)[i], (in_ch if i == 0 else hidden[i - 1]), (8, 4, 2, 1)[i]
        t(f"patch_embeddings.{i}.proj.weight", c, cin, k, k)
        t(f"patch_embeddings.{i}.proj.bias", c)
        t(f"patch_embeddings.{i}.layer_norm.weight", c)
        t(f"patch_embeddings.{i}.layer_norm.bias", c)
        for j in range(d):
            b = f"block.{i}.{j}."
            for n in ("layer_norm_1", "layer_norm_2"):
                t(b + n + ".weight", c)
                t(b + n + ".bias", c)
            for n in ("query", "key", "value"):
                t(b + f"attention.self.{n}.weight", c, c)
                t(b + f"attention.self.{n}.bias", c)
            if sr > 1:
                t(b + "attention.self.sr.weight", c, c, sr, sr)
                t(b + "attention.self.sr.bias", c)
                t(b + "attention.self.layer_norm.weight", c)
                t(b + "attention.self.layer_norm.bias", c)
            t(b + "attention.output.dense.weight", c, c)
            t(b + "attention.output.dense.bias", c)
            t(b + "mlp.dense1.weight", 4 * c, c)
            t(b + "mlp.dense1.bias", 4 * c)
            t(b + "mlp.dwconv.dwconv.weight", 4 * c, 1, 3, 3)
            t(b + "mlp.dwconv.dwconv.bias", 4 * c)
            t(b + "mlp.dense2.weight", c, 4 * c)
            t(b + "mlp.dense2.bias", c)
        t(f"layer_norm.{i}.weight", c)
        t(f"layer_norm.{i}.bias", c)
    sd["classifier.weight"] = torch.randn(1000, hidden[-1], generator=g)
    sd["classifier.bias"] = torch.randn(1000, generator=g)
    return sd


def test_mit_loads_hugging_face_layout(tmp_path):
    hidden, depths = MIT_VARIANTS["b0"]
    sd = _hf_mit_state_dict(hidden, depths)
    f = tmp_path / "pytorch_model.bin"
    torch.save(sd, f)
    cfg = get_cfg()
    cfg.MODEL.BACKBONE.NAME = "MiTBackbone"
    cfg.MODEL.MIT.VARIANT = "b0"
    cfg.MODEL.MIT.PRETRAINED_FILE = str(f)
    cfg.MODEL.SEM_SEG_HEAD.NAME = "SegFormerHead"
    model = build_model(cfg)
    mine = model.backbone.state_dict()
    assert len(mine) == len(sd) - 2  # every encoder tensor, nothing else
    for k, v in mine.items():
        torch.testing.assert_close(v, sd["segformer.encoder." + k], msg=k)
    missing, unexpected = load_hf_mit_state_dict(MiTBackbone(variant="b0"), str(f))
    assert missing == [] and sorted(unexpected) == ["classifier.bias", "classifier.weight"]
    with pytest.raises(ValueError, match="VARIANT"):
        MiTBackbone(variant="b1", pretrained_file=str(f))


def test_inception_stages_1_2_frozen_like_the_original():
    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(os.path.dirname(__file__), "..", "..", "configs", "original_recipes",
                                     "inception_unet_aspp_isic2017_part2.yaml"))
    model = build_model(cfg)
    top = lambda frozen: sorted({n.split(".")[1] for n, p in model.backbone.named_parameters()  # noqa: E731
                                 if p.requires_grad != frozen})
    assert top(True) == ["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1", "Conv2d_4a_3x3"]
    assert top(False) == ["Mixed_5b", "Mixed_5c", "Mixed_5d"]
