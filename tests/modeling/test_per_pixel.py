import numpy as np
import pytest
import torch

from skinformer.config import get_cfg
from skinformer.modeling import build_loss, build_model
from skinformer.modeling.meta_arch import META_ARCH_REGISTRY, PerPixelSegmentor
from skinformer.modeling.losses import LEGACY_LOSS_TYPES


def _cfg(num_classes=1, head="FPNHead", loss="ce+dice"):
    cfg = get_cfg()
    cfg.MODEL.META_ARCHITECTURE = "PerPixelSegmentor"
    cfg.MODEL.BACKBONE.NAME = "TimmBackbone"
    cfg.MODEL.TIMM.NAME = "resnet18"
    cfg.MODEL.SEM_SEG_HEAD.NAME = head
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = num_classes
    cfg.MODEL.SEM_SEG_HEAD.CONVS_DIM = 32
    cfg.MODEL.SEM_SEG_HEAD.ASPP_CHANNELS = 32
    cfg.MODEL.SEM_SEG_HEAD.LOSS_TYPE = loss
    if head == "DeepLabV3PlusHead":
        cfg.MODEL.SEM_SEG_HEAD.IN_FEATURES = ["res2", "res5"]
    return cfg


def _sample(h, w, num_classes, seed=0, orig=None):
    g = torch.Generator().manual_seed(seed)
    d = {"image": torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g),
         "sem_seg": torch.randint(0, num_classes + 1, (h, w), generator=g),
         "height": orig[0] if orig else h, "width": orig[1] if orig else w, "file_name": f"s{seed}.png"}
    d["sem_seg"][:4, :4] = 255
    d["label_masks"] = torch.stack([d["sem_seg"] == c for c in range(num_classes)])
    return d


@pytest.mark.parametrize("head", ["FPNHead", "DeepLabV3PlusHead", "UNetHead", "SegFormerHead"])
@pytest.mark.parametrize("num_classes", [1, 3])
def test_train_and_inference(head, num_classes):
    torch.manual_seed(0)
    model = build_model(_cfg(num_classes, head))
    assert isinstance(model, PerPixelSegmentor)
    # Different sizes in one batch (padding), not multiples of 32.
    batch = [_sample(70, 90, num_classes, 0, orig=(140, 180)), _sample(64, 50, num_classes, 1, orig=(63, 51))]
    model.train()
    losses = model(batch)
    assert set(losses) == {"loss_ce", "loss_dice"}
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    model.eval()
    with torch.no_grad():
        out = model(batch)
    assert [o["sem_seg"].shape for o in out] == [(num_classes, 140, 180), (num_classes, 63, 51)]
    s = out[0]["sem_seg"]
    assert s.min() >= 0 and s.max() <= 1
    if num_classes > 1:  # softmax over K+1: the K class scores sum to at most 1
        assert (s.sum(0) <= 1 + 1e-5).all()


@pytest.mark.parametrize("loss_type", sorted(LEGACY_LOSS_TYPES))
def test_every_loss_type_is_finite_and_weighted(loss_type):
    torch.manual_seed(0)
    cfg = _cfg(2, loss=loss_type)
    model = build_model(cfg).train()
    batch = [_sample(64, 64, 2, 0)]
    torch.manual_seed(1)
    losses = model(batch)
    assert losses and all(torch.isfinite(v) for v in losses.values())
    cfg.MODEL.SEM_SEG_HEAD.LOSS_WEIGHT = 2.0
    torch.manual_seed(0)
    model2 = build_model(cfg).train()
    torch.manual_seed(1)
    losses2 = model2(batch)
    for k in losses:
        torch.testing.assert_close(losses2[k], 2 * losses[k])


@pytest.mark.parametrize("loss_type", sorted(LEGACY_LOSS_TYPES))
def test_ignored_pixels_do_not_contribute(loss_type):
    torch.manual_seed(0)
    k = 2
    logits = torch.randn(2, k + 1, 16, 16, requires_grad=True)
    target = torch.randint(0, k + 1, (2, 16, 16))
    target[:, :8] = 255
    cfg = _cfg(k, loss=loss_type)
    loss = build_loss(cfg)
    total = sum(loss(logits, target).values())
    total.backward()
    assert logits.grad[:, :, :8].abs().max() == 0
    assert logits.grad[:, :, 8:].abs().max() > 0
    # Changing the predictions under ignored pixels changes nothing.
    other = logits.detach().clone()
    other[:, :, :8] = torch.randn_like(other[:, :, :8]) * 10
    total2 = sum(loss(other, target).values())
    torch.testing.assert_close(total2, total.detach())


def test_all_ignored_gives_zero_not_nan():
    model = build_model(_cfg(1)).train()
    d = _sample(64, 64, 1)
    d["sem_seg"][:] = 255
    losses = model([d])
    assert all(v.item() == 0.0 for v in losses.values())
    sum(losses.values()).backward()


def test_padding_is_ignored():
    """A sample padded in a batch gets the same loss as alone (padding = ignore, not background)."""
    torch.manual_seed(0)
    cfg = _cfg(1, head="FPNHead", loss="ce")
    model = build_model(cfg)
    model.eval()  # no dropout / BN batch statistics; losses() is called directly
    small = _sample(64, 64, 1, 3)
    big = _sample(96, 128, 1, 4)
    with torch.no_grad():
        images = model.preprocess_image([small, big])
        assert images.tensor.shape[-2:] == (96, 128)
        logits = torch.nn.functional.interpolate(model.sem_seg_head(model.backbone(images.tensor)),
                                                 size=images.tensor.shape[-2:], mode="bilinear")
        # Give the padded area of `small` a confidently wrong prediction: it must not matter.
        logits[0, 0, 64:, :] = 50.0
        logits[0, 0, :, 64:] = 50.0
        both = model.losses(logits, [small, big], images)["loss_ce"]
        logits[0, 0, 64:, :] = -50.0
        logits[0, 0, :, 64:] = -50.0
        both2 = model.losses(logits, [small, big], images)["loss_ce"]
    torch.testing.assert_close(both, both2)


def test_missing_sem_seg_and_bad_loss_type():
    model = build_model(_cfg(1)).train()
    d = _sample(64, 64, 1)
    del d["sem_seg"]
    with pytest.raises(KeyError, match="sem_seg"):
        model([d])
    cfg = _cfg(1, loss="hinge")
    with pytest.raises(ValueError, match="LOSS_TYPE"):
        build_model(cfg)


def test_sigmoid_inference_for_bce():
    model = build_model(_cfg(2, loss="bce+dice")).eval()
    with torch.no_grad():
        out = model([_sample(64, 64, 2)])
    assert out[0]["sem_seg"].shape == (2, 64, 64)
    assert model.sigmoid


def test_registered_and_plain_construction():
    assert "PerPixelSegmentor" in META_ARCH_REGISTRY
    from skinformer.modeling.backbone import TimmBackbone
    from skinformer.modeling.sem_seg_heads import FPNHead

    bb = TimmBackbone(model_name="resnet18", out_features=["res3", "res4", "res5"])
    head = FPNHead(bb.output_shape(), num_classes=2, conv_dims=16)
    model = PerPixelSegmentor(backbone=bb, sem_seg_head=head, num_classes=1, pixel_mean=[0, 0, 0],
                              pixel_std=[1, 1, 1]).eval()
    with torch.no_grad():
        assert model([_sample(40, 40, 1)])[0]["sem_seg"].shape == (1, 40, 40)


def _lesion_image(size=64, seed=0):
    """A dermoscopy-like toy: skin-coloured noisy background with a darker blurred ellipse."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    cy, cx = rng.uniform(0.35, 0.65, 2) * size
    ry, rx = rng.uniform(0.15, 0.3, 2) * size
    mask = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    img = np.empty((size, size, 3), np.float32)
    img[:] = [225, 180, 160]
    img[mask] = [120, 70, 50]
    img += rng.normal(0, 12, img.shape)
    image = torch.from_numpy(np.clip(img, 0, 255).astype(np.uint8)).permute(2, 0, 1).contiguous()
    # background-not-a-class = K = 1
    sem_seg = torch.from_numpy(np.where(mask, 0, 1)).long()
    return {"image": image, "sem_seg": sem_seg, "height": size, "width": size}


def test_overfits_one_image():
    torch.manual_seed(0)
    cfg = _cfg(1, head="FPNHead", loss="ce+dice")
    model = build_model(cfg).train()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    sample = _lesion_image()
    for _ in range(60):
        losses = model([sample])
        opt.zero_grad()
        sum(losses.values()).backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        score = model([sample])[0]["sem_seg"][0]
    pred = score > 0.5
    gt = sample["sem_seg"] == 0
    dice = 2 * (pred & gt).sum().item() / (pred.sum().item() + gt.sum().item())
    assert dice > 0.9, dice
