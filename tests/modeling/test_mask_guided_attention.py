"""Mask-guided deformable cross-attention and the boxes of mask references (SiMaskFormer AMR)."""
import math

import pytest
import torch

from skinformer.modeling.transformer_decoder.mask_boxes import (
    bitmask_boxes_cxcywh,
    inverse_sigmoid,
    mask2box_boxes_cxcywh,
    mask_boxes_cxcywh,
)
from skinformer.modeling.transformer_decoder.mask_guided_attention import (
    MaskGuidedDeformableAttention,
    gate_attention_logits,
    nearest_pixel_inside,
)

LEVELS = [(16, 16), (8, 8), (4, 4)]  # memory order: high resolution first
MASK_HW = (32, 32)  # the 1/4 grid


def _memory(b, dim, gen):
    s = sum(h * w for h, w in LEVELS)
    shapes = torch.tensor(LEVELS, dtype=torch.long)
    sizes = shapes.prod(1)
    start = torch.cat([sizes.new_zeros(1), sizes.cumsum(0)[:-1]])
    return torch.randn(b, s, dim, generator=gen), shapes, start


def _disc(b, nq, centre=(0.5, 0.45), radius=0.2):
    h, w = MASK_HW
    ys = (torch.arange(h) + 0.5) / h
    xs = (torch.arange(w) + 0.5) / w
    d = (xs[None, :] - centre[0]) ** 2 + (ys[:, None] - centre[1]) ** 2
    return (d < radius ** 2).expand(b, nq, h, w).clone()


# ------------------------------------------------------------------------------------------------
# boxes of mask references
# ------------------------------------------------------------------------------------------------
def test_mask_boxes_conventions_and_empty_masks():
    m = torch.zeros(2, 8, 10, dtype=torch.bool)
    m[0, 2:5, 3:7] = True  # rows 2..4, cols 3..6
    edge = mask_boxes_cxcywh(m)
    assert torch.allclose(edge[0], torch.tensor([(3 + 6 + 1) / 20, (2 + 4 + 1) / 16, 4 / 10, 3 / 8]))
    assert torch.allclose(edge[1], torch.tensor([0.5, 0.5, 1.0, 1.0]))  # empty -> whole image
    seed = mask_boxes_cxcywh(m, original_convention=True)
    assert torch.allclose(seed[0], torch.tensor([(3 + 6) / 20, (2 + 4) / 16, 4 / 10, 3 / 8]))
    # Original implementation: degenerate, negative box for an empty mask (difference D4).
    assert torch.allclose(seed[1], torch.tensor([0.5, 0.5, -9 / 10, -7 / 8]))

    bit = bitmask_boxes_cxcywh(m)
    assert torch.allclose(bit[0], edge[0]) and torch.allclose(bit[1], edge[1])
    bit_seed = bitmask_boxes_cxcywh(m, original_convention=True)
    assert torch.equal(bit_seed[1], torch.zeros(4))
    assert inverse_sigmoid(bit_seed[1]).max() < -11  # logit -11.5 as the original implementation
    m2b = mask2box_boxes_cxcywh(m)
    assert torch.allclose(m2b[0], torch.tensor([4.5 / 10, 3 / 8, 3 / 10, 2 / 8]))

    # Logits (foreground = logit > 0) give the same boxes as the bool masks.
    logits = torch.where(m, 3.0, -2.0)
    assert torch.equal(mask_boxes_cxcywh(logits), edge)
    assert torch.equal(mask_boxes_cxcywh(logits, original_convention=True), seed)


# ------------------------------------------------------------------------------------------------
# nearest-pixel lookup and gating
# ------------------------------------------------------------------------------------------------
def test_nearest_pixel_lookup_corrected_and_seed():
    mask = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
    mask[0, 0, 2, 1] = True  # row 2, col 1
    mask[0, 0, 0, 0] = True
    locs = torch.tensor([[0.3, 0.55], [0.3, 0.45], [-0.1, 0.1], [0.1, -0.2], [0.99, 0.99]]).view(1, 1, 5, 2)
    inside = nearest_pixel_inside(mask, locs)
    assert inside.tolist() == [[[True, False, False, False, False]]]
    # Seed: truncation + clamp, so points left of / above the image read the border pixel (0, 0).
    inside_seed = nearest_pixel_inside(mask, locs, truncate=True)
    assert inside_seed.tolist() == [[[True, False, True, True, False]]]
    # Float logits are thresholded at 0 where they are read.
    assert torch.equal(nearest_pixel_inside(torch.where(mask, 1.0, -1.0), locs), inside)


def test_gate_logits_minus_inf_vs_seed_multiplication():
    logits = torch.tensor([[[[1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0]]]])  # 1×1×2 heads×4 points
    inside = torch.tensor([[[[True, False, True, False], [False, False, False, False]]]])
    gated = gate_attention_logits(logits, inside)
    assert gated[0, 0, 0].tolist() == [1.0, -math.inf, 3.0, -math.inf]
    # A row with every point outside stays ungated (no NaN after the softmax).
    assert gated[0, 0, 1].tolist() == [1.0, 2.0, 3.0, 4.0]
    assert torch.isfinite(gated.softmax(-1)).all()
    seed = gate_attention_logits(logits, inside, multiply=True)
    assert seed[0, 0, 0].tolist() == [1.0, 0.0, 3.0, 0.0]
    assert seed[0, 0, 1].tolist() == [0.0, 0.0, 0.0, 0.0]
    # "both": only the points flagged as gated are affected.
    odd = torch.tensor([False, True, False, True])
    both = gate_attention_logits(logits, inside, odd)
    assert both[0, 0, 1].tolist() == [1.0, -math.inf, 3.0, -math.inf]


# ------------------------------------------------------------------------------------------------
# the module
# ------------------------------------------------------------------------------------------------
def _module(sampling, multiplicative_gate=False, seed=0, spread=12.0):
    gen = torch.Generator().manual_seed(seed)
    m = MaskGuidedDeformableAttention(32, len(LEVELS), 4, 4, sampling=sampling, multiplicative_gate=multiplicative_gate)
    with torch.no_grad():
        # Query-dependent logits, and points spread to ±1.5 box sizes; point 0 sits at the box
        # centre so every (query, head) row has a point on the (disc) mask.
        m.attn.attention_weights.weight.normal_(0, 0.5, generator=gen)
        off = torch.empty(4, len(LEVELS), 4, 2).uniform_(-spread, spread, generator=gen)
        off[:, :, 0] = 0
        m.attn.sampling_offsets.bias.copy_(off.flatten())
    return m


def _run(m, memory, shapes, start, query, mask, pred_boxes):
    mask_boxes = mask_boxes_cxcywh(mask)
    return m(query, memory, shapes, start, pred_boxes, mask_boxes, mask)


def test_minus_inf_gating_ignores_values_outside_the_mask():
    gen = torch.Generator().manual_seed(1)
    b, nq, dim = 2, 3, 32
    memory, shapes, start = _memory(b, dim, gen)
    query = torch.randn(b, nq, dim, generator=gen)
    mask = _disc(b, nq)
    box = mask_boxes_cxcywh(mask)[0, 0]
    pred_boxes = torch.tensor([0.5, 0.5, 0.9, 0.9]).expand(b, nq, 4)

    # Perturb every value token more than one level pixel away from the mask's box: bilinear
    # samples taken at locations on the mask can never read them.
    x0, y0 = (box[0] - box[2] / 2).item(), (box[1] - box[3] / 2).item()
    x1, y1 = (box[0] + box[2] / 2).item(), (box[1] + box[3] / 2).item()
    far = []
    for h, w in LEVELS:
        ys = (torch.arange(h) + 0.5) / h
        xs = (torch.arange(w) + 0.5) / w
        near_x = (xs > x0 - 1.0 / w) & (xs < x1 + 1.0 / w)
        near_y = (ys > y0 - 1.0 / h) & (ys < y1 + 1.0 / h)
        far.append(~(near_y[:, None] & near_x[None, :]).flatten())
    far = torch.cat(far)
    assert far.sum() > 50
    perturbed = memory.clone()
    perturbed[:, far] += 10 * torch.randn(b, int(far.sum()), dim, generator=gen)

    corrected = _module("mask")
    out = _run(corrected, memory, shapes, start, query, mask, pred_boxes)
    out_p = _run(corrected, perturbed, shapes, start, query, mask, pred_boxes)
    assert torch.allclose(out, out_p, atol=1e-5)

    # The test can fail: the original implementation's 0/1 multiplication (outside points keep weight) and the
    # ungated box sampling both read the perturbed values.
    seed = _module("mask", multiplicative_gate=True)
    seed.load_state_dict(corrected.state_dict())
    assert not torch.allclose(_run(seed, memory, shapes, start, query, mask, pred_boxes),
                              _run(seed, perturbed, shapes, start, query, mask, pred_boxes), atol=1e-3)
    bbox = _module("bbox")
    bbox.load_state_dict(corrected.state_dict())
    assert not torch.allclose(_run(bbox, memory, shapes, start, query, mask, pred_boxes),
                              _run(bbox, perturbed, shapes, start, query, mask, pred_boxes), atol=1e-3)


def test_seed_gating_multiplies_logits():
    gen = torch.Generator().manual_seed(2)
    b, nq, dim = 1, 2, 32
    memory, shapes, start = _memory(b, dim, gen)
    query = torch.randn(b, nq, dim, generator=gen)
    mask = _disc(b, nq)
    seen = {}

    m = _module("mask", multiplicative_gate=True)
    orig = m._mask_gate

    def spy(mask_, gated=None):
        fn = orig(mask_, gated)

        def wrapped(logits, locs):
            out = fn(logits, locs)
            seen.update(logits=logits, out=out, inside=nearest_pixel_inside(mask_, locs, True).flatten(-2))
            return out
        return wrapped

    m._mask_gate = spy
    _run(m, memory, shapes, start, query, mask, mask_boxes_cxcywh(mask))
    assert seen["inside"].any() and (~seen["inside"]).any()
    assert torch.equal(seen["out"], seen["logits"] * seen["inside"].float())


def test_both_matches_single_box_modes_when_boxes_agree():
    gen = torch.Generator().manual_seed(3)
    b, nq, dim = 2, 3, 32
    memory, shapes, start = _memory(b, dim, gen)
    query = torch.randn(b, nq, dim, generator=gen)
    full = torch.ones(b, nq, *MASK_HW, dtype=torch.bool)  # gate never blocks...
    boxes = torch.rand(b, nq, 4, generator=gen) * 0.5 + 0.25
    ref = _module("mask", spread=2.0)  # ...and every point stays inside the image
    outs = {}
    for mode in ("mask", "bbox", "both"):
        m = _module(mode, spread=2.0)
        m.load_state_dict(ref.state_dict())
        outs[mode] = m(query, memory, shapes, start, boxes, boxes, full)
    assert torch.allclose(outs["both"], outs["bbox"], atol=1e-5)
    assert torch.allclose(outs["mask"], outs["bbox"], atol=1e-5)
    # With different boxes, "both" differs from both single-box modes.
    other = torch.rand(b, nq, 4, generator=gen) * 0.5 + 0.25
    m = _module("both", spread=2.0)
    m.load_state_dict(ref.state_dict())
    both = m(query, memory, shapes, start, boxes, other, full)
    assert not torch.allclose(both, outs["bbox"], atol=1e-4)


def test_bad_sampling_type_is_a_clear_error():
    with pytest.raises(ValueError, match="TYPE_SAMPLING_LOCATIONS"):
        MaskGuidedDeformableAttention(32, 3, 4, 4, sampling="points")
