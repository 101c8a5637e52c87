"""Mask denoising of SiMaskFormer's decoder: queries, noise, attention mask, group isolation."""
import math

import pytest
import torch
import torch.nn.functional as F

from skinformer.modeling.transformer_decoder import SiMaskFormerDecoder
from skinformer.modeling.transformer_decoder.denoising import (
    MaskDenoiser,
    dn_attention_mask,
    random_affine_mask_noise,
)
from skinformer.modeling.transformer_decoder.mask_boxes import mask_boxes_cxcywh

HP, WP = 64, 64  # padded input size
H4, W4 = 16, 16  # mask-feature size


def _target(rects, labels, hp=HP, wp=WP):
    """GT dict from pixel rectangles (y0, x0, y1, x1) (exclusive ends)."""
    masks = torch.zeros(len(rects), hp, wp)
    boxes = []
    for i, (y0, x0, y1, x1) in enumerate(rects):
        masks[i, y0:y1, x0:x1] = 1
        boxes.append([(x0 + x1) / 2 / wp, (y0 + y1) / 2 / hp, (x1 - x0) / wp, (y1 - y0) / hp])
    return {"labels": torch.tensor(labels, dtype=torch.long), "masks": masks,
            "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)}


def test_attention_mask_blocks_matching_to_dn_and_groups_to_each_other():
    groups, pad, q = 3, 2, 4
    mask = dn_attention_mask(groups, pad, q)
    d = groups * pad
    assert mask.shape == (d + q, d + q) and mask.dtype == torch.bool
    for i in range(d + q):
        for j in range(d + q):
            if i >= d:  # matching query
                expected = j < d
            elif j >= d:  # DN query looking at a matching query
                expected = False
            else:
                expected = i // pad != j // pad
            assert bool(mask[i, j]) == expected, (i, j)


def test_denoiser_slots_padding_and_identity_noise():
    torch.manual_seed(0)
    targets = [_target([(8, 8, 24, 32)], [1]),
               _target([(4, 4, 20, 20), (32, 36, 60, 60)], [0, 2]),
               _target([], [])]
    dn = MaskDenoiser(num_classes=3, hidden_dim=16, dn_num=7, noise_scale=0.0)
    out = dn(targets, num_queries=5, mask_size=(H4, W4))
    assert out.num_groups == 3 and out.single_pad == 2 and out.pad_size == 6
    assert out.content.shape == (3, 6, 16) and out.box_logits.shape == (3, 6, 4)
    assert out.mask_logits.shape == (3, 6, H4, W4) and out.attn_mask.shape == (11, 11)
    expected_labels = torch.tensor([[1, -1] * 3, [0, 2] * 3, [-1, -1] * 3])
    assert torch.equal(out.known_labels, expected_labels)
    pad = expected_labels < 0
    assert (out.content[pad] == 0).all() and (out.box_logits[pad] == 0).all() and (out.mask_logits[pad] == 0).all()
    real = ~pad
    assert torch.allclose(out.content[real], dn.label_enc(expected_labels[real]))
    # noise_scale 0: the DN mask is the GT at 1/4 resolution and the box its tight box.
    for b, t in enumerate(targets):
        for i in range(len(t["labels"])):
            gt_low = F.interpolate(t["masks"][i][None, None], size=(H4, W4), mode="bilinear", align_corners=False)[0, 0]
            for g in range(3):
                slot = g * 2 + i
                assert torch.equal(out.mask_logits[b, slot] > 0, gt_low > 0.5)
                assert torch.allclose(out.box_logits[b, slot].sigmoid(), t["boxes"][i], atol=1e-4)


def test_single_gt_and_empty_batches():
    dn = MaskDenoiser(num_classes=1, hidden_dim=8, dn_num=100, noise_scale=0.4)
    out = dn([_target([(10, 10, 40, 30)], [0])], num_queries=3, mask_size=(H4, W4))
    assert out.num_groups == 100 and out.mask_logits.shape == (1, 100, H4, W4)
    assert torch.isfinite(out.mask_logits).all() and torch.isfinite(out.box_logits).all()
    assert dn([_target([], []), _target([], [])], num_queries=3, mask_size=(H4, W4)) is None
    # dn_num smaller than the largest GT count -> skipped
    small = MaskDenoiser(num_classes=1, hidden_dim=8, dn_num=1)
    assert small([_target([(0, 0, 8, 8), (20, 20, 30, 30)], [0, 0])], 3, (H4, W4)) is None
    with pytest.raises(ValueError, match="NUM_CLASSES"):
        dn([_target([(0, 0, 8, 8)], [3])], 3, (H4, W4))


def test_label_noise_rate():
    torch.manual_seed(0)
    dn = MaskDenoiser(num_classes=5, hidden_dim=8, dn_num=4000, noise_scale=1.0)
    out = dn([_target([(8, 8, 24, 24)], [2])], num_queries=1, mask_size=(H4, W4))
    changed = (out.known_labels != 2).float().mean().item()
    # p(flip) = 0.5·ns, and a flip keeps the class with probability 1/K.
    assert abs(changed - 0.5 * 4 / 5) < 0.04


def _centres(noised):
    return mask_boxes_cxcywh(noised > 0.5)[..., :2]


def test_mask_noise_translation_is_symmetric_and_about_the_object():
    gen = torch.Generator().manual_seed(0)
    t = _target([(8, 4, 48, 64)], [0], hp=128, wp=128)  # 60×40 object off the image centre
    copies = 400
    corrected = random_affine_mask_noise(t["masks"], t["boxes"], 0.4, (32, 32), copies, generator=gen)[:, 0]
    gen.manual_seed(0)
    seed = random_affine_mask_noise(t["masks"], t["boxes"], 0.4, (32, 32), copies, original_mask_noise=True, generator=gen)[:, 0]
    gt_centre = t["boxes"][0, :2]
    shift = (_centres(corrected) - gt_centre) * 32  # in 1/4-resolution pixels
    shift_seed = (_centres(seed) - gt_centre) * 32
    # Corrected: symmetric translation up to (w, h)/2·ns = (12, 8) px = (3, 2) px at 1/4 resolution
    # (+0.5 px rasterisation); rotation and scaling about the object centre do not move it.
    assert shift[:, 0].abs().max() <= 3.5 and shift[:, 1].abs().max() <= 2.5
    assert abs(shift[:, 0].mean()) < 0.5 and abs(shift[:, 1].mean()) < 0.5
    assert (shift[:, 0] >= 2).any() and (shift[:, 0] <= -2).any()
    # Seed: rotation / scaling about the image centre move this off-centre object further.
    assert shift_seed.abs().max() > 4.0


def test_seed_mask_noise_equals_full_resolution_warp_then_nearest():
    t = _target([(8, 4, 48, 64), (30, 30, 60, 50)], [0, 0])
    copies, ns = 2, 0.4
    gen = torch.Generator().manual_seed(5)
    fast = random_affine_mask_noise(t["masks"], t["boxes"], ns, (H4, W4), copies, original_mask_noise=True, generator=gen)
    # Reference: the original implementation's procedure on the same random draws.
    gen.manual_seed(5)
    u = torch.rand((copies * 2, 5), generator=gen)
    box = t["boxes"].repeat(copies, 1) * torch.tensor([WP, HP, WP, HP])
    cx, cy, bw, bh = box.unbind(-1)
    a = (u[:, 0] * 90 - 45) * ns * math.pi / 180
    s = 1 - ns / 2 + u[:, 1] * ns
    ox, oy = u[:, 2] * bw / 2 * ns, u[:, 3] * bh / 2 * ns
    theta = torch.stack([torch.stack([s * a.cos(), -s * a.sin(), (ox + (1 - s) * cx) / WP], -1),
                         torch.stack([s * a.sin(), s * a.cos(), (oy + (1 - s) * cy) / HP], -1)], 1)
    masks = t["masks"].repeat(copies, 1, 1)[:, None]
    grid = F.affine_grid(theta, list(masks.shape), align_corners=False)
    warped = F.grid_sample(masks, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    ref = F.interpolate(warped, size=(H4, W4), mode="nearest")[:, 0].clamp(0, 1).view(copies, 2, H4, W4)
    assert torch.allclose(fast, ref, atol=1e-5)


def test_dn_mask_logit_range_corrected_vs_seed():
    t = [_target([(8, 8, 40, 40)], [0])]
    corrected = MaskDenoiser(1, 8, dn_num=4, noise_scale=0.4)(t, 2, (H4, W4)).mask_logits
    seed = MaskDenoiser(1, 8, dn_num=4, noise_scale=0.4, original_mask_noise=True, original_box_convention=True)(t, 2, (H4, W4)).mask_logits
    assert corrected.dtype == torch.float32 and seed.dtype == torch.float32
    assert abs(corrected.max().item() - math.log(1 / 1e-5)) < 1e-3
    assert abs(seed.max().item() - 25.33) < 0.01  # eps 1e-11, then float16
    assert torch.equal(seed, seed.half().float())


# ------------------------------------------------------------------------------------------------
# group isolation inside the decoder
# ------------------------------------------------------------------------------------------------
def _decoder(**kw):
    args = dict(in_channels=32, num_classes=2, hidden_dim=32, num_queries=4, nheads=4, dim_feedforward=64,
                dec_layers=2, n_points=4, mask_dim=32, dn_num=6)
    args.update(kw)
    return SiMaskFormerDecoder(**args)


@pytest.mark.parametrize("mask_embed_type", ["SumSinusoidalMask", "MaskSimpleCNN"])
def test_dn_groups_do_not_see_each_other(mask_embed_type):
    torch.manual_seed(0)
    dec = _decoder(mask_embed_type=mask_embed_type).eval()  # eval: BatchNorm must not mix queries
    groups, pad, q, b = 3, 2, 4, 2
    d = groups * pad
    memory = torch.randn(b, 16 * 16 + 8 * 8 + 4 * 4, 32)
    shapes = torch.tensor([[16, 16], [8, 8], [4, 4]])
    start = torch.tensor([0, 256, 320])
    mask_features = torch.randn(b, 32, H4, W4)
    tgt = torch.randn(b, d + q, 32)
    refbox = torch.randn(b, d + q, 4)
    refmask = torch.randn(b, d + q, H4, W4) * 3
    attn_mask = dn_attention_mask(groups, pad, q)

    def run(tgt_, box_, mask_, attn=attn_mask):
        with torch.no_grad():
            return dec.decode(tgt_, box_, mask_, memory, shapes, start, mask_features, attn)

    base = run(tgt, refbox, refmask)
    g1 = slice(pad, 2 * pad)
    tgt2, box2, mask2 = tgt.clone(), refbox.clone(), refmask.clone()
    tgt2[:, g1] += torch.randn_like(tgt2[:, g1])
    box2[:, g1] += 1.0
    mask2[:, g1] = -mask2[:, g1]
    pert = run(tgt2, box2, mask2)
    others = torch.cat([torch.arange(0, pad), torch.arange(2 * pad, d + q)])
    for p0, p1 in zip(base, pert):
        for key in ("pred_logits", "pred_masks", "pred_boxes"):
            assert torch.allclose(p0[key][:, others], p1[key][:, others], atol=1e-5), key
    assert not torch.allclose(base[-1]["pred_logits"][:, g1], pert[-1]["pred_logits"][:, g1])
    # Without the attention mask the perturbation leaks into the other queries (the test can fail).
    leak0 = run(tgt, refbox, refmask, None)
    leak1 = run(tgt2, box2, mask2, None)
    assert not torch.allclose(leak0[-1]["pred_logits"][:, others], leak1[-1]["pred_logits"][:, others], atol=1e-5)
