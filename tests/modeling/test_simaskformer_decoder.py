"""SiMaskFormerDecoder: output contract, UOME / AMR / mask-embedding / sampling / quirk switches."""
import glob
import math
import os

import pytest
import torch
import torch.nn as nn
import yaml

from skinformer.config import get_cfg
from skinformer.modeling.transformer_decoder import SiMaskFormerDecoder, build_transformer_decoder
from skinformer.modeling.transformer_decoder.mask_boxes import bitmask_boxes_cxcywh, inverse_sigmoid
from skinformer.modeling.transformer_decoder.mask_embedding import (
    LightMaskEncoder,
    SumSinusoidalMaskEmbedding,
    per_pixel_sine_table,
)
from skinformer.modeling.transformer_decoder.query_selection import gen_encoder_output_proposals
from skinformer.modeling.transformer_decoder.simaskformer_decoder import original_implementation_items

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DIM, Q, L = 32, 8, 2
LEVEL_SHAPES = [(2, 2), (4, 4), (8, 8)]  # given low resolution first (1/32, 1/16, 1/8) of a 64² input
H4, W4 = 16, 16


def _decoder(**kw):
    args = dict(in_channels=DIM, num_classes=2, hidden_dim=DIM, num_queries=Q, nheads=4, dim_feedforward=64,
                dec_layers=L, n_points=4, mask_dim=DIM, dn_num=6)
    args.update(kw)
    return SiMaskFormerDecoder(**args)


def _original_flags(dec):
    """Each original-implementation item as the module that honours it holds it."""
    flags = {"D1": dec.emit_mask_two_deltas, "D4/D21": dec.original_box_convention, "D22": dec.select_invalid_tokens,
             "D3": all(layer.cross_attn.multiplicative_gate for layer in dec.layers)}
    if dec.denoiser is not None:
        flags["D8"] = dec.denoiser.original_mask_noise
        flags["D4/D21 DN"] = dec.denoiser.original_box_convention
    if dec.mask_embedding is not None:
        flags["D23"] = dec.mask_embedding.column_first
    return flags


def _inputs(b, seed=0):
    gen = torch.Generator().manual_seed(seed)
    feats = [torch.randn(b, DIM, h, w, generator=gen) for h, w in LEVEL_SHAPES]
    return feats, torch.randn(b, DIM, H4, W4, generator=gen)


def _targets(counts, num_classes=2, hp=64, wp=64):
    out = []
    for n in counts:
        masks = torch.zeros(n, hp, wp)
        boxes = []
        for i in range(n):
            y0, x0 = 4 + 12 * i, 6 + 8 * i
            masks[i, y0:y0 + 24, x0:x0 + 20] = 1
            boxes.append([(x0 + 10) / wp, (y0 + 12) / hp, 20 / wp, 24 / hp])
        out.append({"labels": torch.arange(n) % num_classes, "masks": masks,
                    "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)})
    return out


def _check_set(pred, b, n, k):
    assert pred["pred_logits"].shape == (b, n, k)
    assert pred["pred_masks"].shape == (b, n, H4, W4)
    assert pred["pred_boxes"].shape == (b, n, 4)
    assert ((pred["pred_boxes"] >= 0) & (pred["pred_boxes"] <= 1)).all()


# ------------------------------------------------------------------------------------------------
# output contract
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("b", [1, 3])
@pytest.mark.parametrize("ce", [True, False])
def test_output_contract_train_and_eval(b, ce):
    torch.manual_seed(0)
    dec = _decoder(semantic_ce_loss=ce)
    k = 3 if ce else 2
    feats, mf = _inputs(b)
    counts = [1, 2, 0][:b]
    out = dec.train()(feats, mf, _targets(counts))
    _check_set(out, b, Q, k)
    assert len(out["aux_outputs"]) == L  # initial prediction + layers 1..L-1
    for aux in out["aux_outputs"]:
        _check_set(aux, b, Q, k)
    _check_set(out["interm_outputs"], b, Q, k)
    cost = out["pred_proposal_cost"]
    assert cost.shape == (b, Q) and ((cost > 0) & (cost < 1)).all()
    dn = out["dn_outputs"]
    m = max(counts)
    assert dn["single_pad"] == m and dn["num_groups"] == 6 // m
    d = dn["num_groups"] * m
    _check_set(dn["outputs"], b, d, k)
    assert len(dn["outputs"]["aux_outputs"]) == L
    for aux in dn["outputs"]["aux_outputs"]:
        _check_set(aux, b, d, k)

    with torch.no_grad():
        ev = dec.eval()(feats, mf, _targets(counts))  # targets are ignored at inference
    assert "dn_outputs" not in ev
    assert set(ev) == {"pred_logits", "pred_masks", "pred_boxes", "aux_outputs", "interm_outputs",
                       "pred_proposal_cost"}
    _check_set(ev, b, Q, k)
    # The inference fast path (fused R + Δm) gives the training path's values.
    with torch.enable_grad():
        ev_grad = dec(feats, mf)
    assert torch.allclose(ev["pred_masks"], ev_grad["pred_masks"], atol=1e-4)


def test_without_dn_and_with_empty_ground_truth():
    torch.manual_seed(0)
    feats, mf = _inputs(2)
    out = _decoder(dn="no").train()(feats, mf, _targets([1, 1]))
    assert "dn_outputs" not in out and out["pred_logits"].shape == (2, Q, 2)
    dec = _decoder().train()
    out = dec(feats, mf, _targets([0, 0]))
    assert "dn_outputs" not in out
    out["pred_logits"].sum().backward()
    # The label embedding stays in the graph (zero gradient) so DDP does not complain.
    grad = dec.denoiser.label_enc.weight.grad
    assert grad is not None and (grad == 0).all()
    # A single DN mask (one image, one GT) works (the original implementation's squeeze bug, difference D8).
    out = _decoder(dn_num=1).train()(*_inputs(1), _targets([1]))
    assert out["dn_outputs"]["num_groups"] == 1 and out["dn_outputs"]["outputs"]["pred_masks"].shape == (1, 1, H4, W4)


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="INITIALIZE_BOX_TYPE"):
        _decoder(initialize_box_type="box")
    with pytest.raises(ValueError, match="TYPE_MASK_EMBED"):
        _decoder(mask_embed_type="Sum")
    with pytest.raises(ValueError, match="DN"):
        _decoder(dn="boxes")
    with pytest.raises(ValueError, match="mask_classification"):
        _decoder(mask_classification=False)
    with pytest.raises(ValueError, match="NUM_OBJECT_QUERIES"):
        _decoder(num_queries=200)(*_inputs(1))
    with pytest.raises(ValueError, match="feature levels"):
        feats, mf = _inputs(1)
        _decoder()(feats[:2], mf)


# ------------------------------------------------------------------------------------------------
# UOME: query selection
# ------------------------------------------------------------------------------------------------
class _FixedCost(nn.Module):
    """Stands in for the proposal head: fixed, distinct per-token costs."""

    def __init__(self, costs):
        super().__init__()
        self.costs = costs

    def forward(self, x):
        return self.costs[None].expand(x.shape[0], -1) + 0 * x.sum(-1)


@pytest.mark.parametrize("quirks", [False, True])
def test_uome_selects_the_lowest_cost_valid_tokens(quirks):
    torch.manual_seed(0)
    # Proposal side 0.3: the 1/32 level (memory level 2, side 1.2) is invalid.
    dec = _decoder(proposal_box_size=0.3, **original_implementation_items(quirks)).eval()
    shapes = LEVEL_SHAPES[::-1]
    _, valid = gen_encoder_output_proposals(shapes, 0.3, "cpu")
    s = valid.numel()
    assert (~valid).sum() == 4
    costs = torch.rand(s, generator=torch.Generator().manual_seed(1)) * 0.5 + 0.4
    costs[~valid] = torch.linspace(0.01, 0.04, 4)  # the cheapest tokens are invalid
    dec.proposal_head = _FixedCost(costs)
    with torch.no_grad():
        out = dec(*_inputs(2))
    pool = costs if quirks else costs[valid]
    expected = torch.sort(pool).values[:Q]
    for b in range(2):
        assert torch.allclose(torch.sort(out["pred_proposal_cost"][b]).values, expected)
    # Corrected: no invalid token; original implementation: the invalid ones are taken (D22).
    assert bool((out["pred_proposal_cost"] < 0.05).any()) == quirks


def test_uome_selection_with_the_learned_head_matches_brute_force():
    torch.manual_seed(0)
    dec = _decoder().eval()
    feats, mf = _inputs(3)
    with torch.no_grad():
        out = dec(feats, mf)
        memory, shapes, _, _ = dec._flatten_memory(feats)
        _, valid = gen_encoder_output_proposals(shapes, 0.1, "cpu")
        om = dec.enc_output_norm(dec.enc_output(memory.masked_fill(~valid[None, :, None], 0)))
        costs = dec.proposal_head(om)
    for b in range(3):
        expected = torch.sort(costs[b][valid]).values[:Q]
        assert torch.allclose(torch.sort(out["pred_proposal_cost"][b]).values, expected)


def test_uome_off_selects_by_class_score():
    torch.manual_seed(0)
    dec = _decoder(uome=False, semantic_ce_loss=True).eval()
    assert dec.proposal_head is None
    feats, mf = _inputs(2)
    with torch.no_grad():
        out = dec(feats, mf)
        memory, shapes, _, _ = dec._flatten_memory(feats)
        _, valid = gen_encoder_output_proposals(shapes, 0.1, "cpu")
        om = dec.enc_output_norm(dec.enc_output(memory.masked_fill(~valid[None, :, None], 0)))
        logits = dec.intern_class_embed(om)
        score = logits.softmax(-1)[..., :-1].amax(-1).masked_fill(~valid[None], -math.inf)
        index = score.topk(Q, dim=1).indices
        expected = logits.gather(1, index[..., None].expand(-1, -1, 3))
    assert "pred_proposal_cost" not in out
    got = out["interm_outputs"]["pred_logits"]
    for b in range(2):
        assert torch.allclose(torch.sort(got[b, :, 0]).values, torch.sort(expected[b, :, 0]).values, atol=1e-6)


def test_gradients_flow_to_the_proposal_head():
    torch.manual_seed(0)
    dec = _decoder().train()
    out = dec(*_inputs(2), _targets([1, 1]))
    out["pred_proposal_cost"].sum().backward()
    for p in list(dec.proposal_head.parameters()) + list(dec.enc_output.parameters()):
        assert p.grad is not None and p.grad.abs().sum() > 0


# ------------------------------------------------------------------------------------------------
# AMR: mask refinement, positional query, sampling
# ------------------------------------------------------------------------------------------------
def _state(b, n, seed=0):
    gen = torch.Generator().manual_seed(seed)
    memory = torch.randn(b, sum(h * w for h, w in LEVEL_SHAPES), DIM, generator=gen)
    shapes = torch.tensor(LEVEL_SHAPES[::-1])
    start = torch.tensor([0, 64, 80])
    tgt = torch.randn(b, n, DIM, generator=gen)
    refbox = torch.randn(b, n, 4, generator=gen)
    refmask = torch.randn(b, n, H4, W4, generator=gen) * 3
    mf = torch.randn(b, DIM, H4, W4, generator=gen)
    return tgt, refbox, refmask, memory, shapes, start, mf


def _mask_embed_outputs(dec):
    seen = []
    dec.mask_embed.register_forward_hook(lambda mod, inp, out: seen.append(out.detach()))
    return seen


@pytest.mark.parametrize("quirks", [False, True])
@pytest.mark.parametrize("grad", [True, False])
def test_emitted_mask_is_reference_plus_delta(quirks, grad):
    torch.manual_seed(0)
    dec = _decoder(dec_layers=3, **original_implementation_items(quirks)).eval()
    seen = _mask_embed_outputs(dec)
    tgt, refbox, refmask, memory, shapes, start, mf = _state(2, 5)
    with torch.set_grad_enabled(grad):
        preds = dec.decode(tgt, refbox, refmask, memory, shapes, start, mf)
    assert len(preds) == 4 and torch.equal(preds[0]["pred_masks"], refmask)
    ref = refmask
    for layer, emb in enumerate(seen):
        delta = torch.einsum("bqc,bchw->bqhw", emb, mf)
        expected = ref + (2 * delta if quirks else delta)  # original implementation: R + 2Δm (D1)
        assert torch.allclose(preds[layer + 1]["pred_masks"], expected, atol=1e-4)
        ref = ref + delta


def test_amr_off_predicts_masks_directly_and_ignores_the_mask_reference():
    torch.manual_seed(0)
    off = _decoder(amr=False, sampling_locations="mask").eval()
    assert off.mask_embedding is None
    assert all(layer.cross_attn.sampling == "bbox" for layer in off.layers)
    seen = _mask_embed_outputs(off)
    tgt, refbox, refmask, memory, shapes, start, mf = _state(2, 5)
    with torch.no_grad():
        p0 = off.decode(tgt, refbox, refmask, memory, shapes, start, mf)
        p1 = off.decode(tgt, refbox, -refmask, memory, shapes, start, mf)
    for layer in range(L):
        delta = torch.einsum("bqc,bchw->bqhw", seen[layer], mf)
        assert torch.allclose(p0[layer + 1]["pred_masks"], delta, atol=1e-5)
        for key in ("pred_logits", "pred_masks", "pred_boxes"):
            assert torch.allclose(p0[layer + 1][key], p1[layer + 1][key], atol=1e-6)
    # AMR on: the mask reference drives the layers (the test can fail).
    on = _decoder().eval()
    with torch.no_grad():
        q0 = on.decode(tgt, refbox, refmask, memory, shapes, start, mf)
        q1 = on.decode(tgt, refbox, -refmask, memory, shapes, start, mf)
    assert not torch.allclose(q0[-1]["pred_logits"], q1[-1]["pred_logits"], atol=1e-4)


def test_mask_embedding_and_sampling_switches():
    torch.manual_seed(0)
    assert isinstance(_decoder().mask_embedding, SumSinusoidalMaskEmbedding)
    cnn = _decoder(mask_embed_type="MaskSimpleCNN")
    assert isinstance(cnn.mask_embedding, LightMaskEncoder)
    calls = []
    cnn.mask_embedding.register_forward_hook(lambda *a: calls.append(1))
    cnn.eval()(*_inputs(1))
    assert len(calls) == L

    tgt, refbox, refmask, memory, shapes, start, mf = _state(2, 5)
    base = _decoder(sampling_locations="mask").eval()
    outs = {}
    for mode in ("mask", "bbox", "both"):
        dec = _decoder(sampling_locations=mode).eval()
        assert all(layer.cross_attn.sampling == mode for layer in dec.layers)
        dec.load_state_dict(base.state_dict())
        torch.manual_seed(1)  # same non-trivial attention logits in every mode
        for layer in dec.layers:
            with torch.no_grad():
                layer.cross_attn.attn.attention_weights.weight.normal_(0, 0.5)
        with torch.no_grad():
            outs[mode] = dec.decode(tgt, refbox, refmask, memory, shapes, start, mf)[-1]["pred_logits"]
    assert not torch.allclose(outs["mask"], outs["bbox"], atol=1e-4)
    assert not torch.allclose(outs["both"], outs["bbox"], atol=1e-4)


def test_boundary_band_embedding():
    emb = SumSinusoidalMaskEmbedding(num_feats=16)
    h, w = 12, 10
    # Empty band (all logits far from 0) -> zero embedding.
    far = torch.full((1, 2, h, w), 5.0)
    far[0, 1] = -5.0
    assert torch.equal(emb(far), torch.zeros(1, 2, 32))
    # Hand-made band: mean of the dense per-pixel sine table over the band pixels.
    logits = torch.full((1, 1, h, w), -4.0)
    band_pixels = [(2, 3), (2, 4), (7, 1), (11, 9)]
    for y, x in band_pixels:
        logits[0, 0, y, x] = 0.3  # sigmoid 0.57: inside (0.25, 0.75)
    logits[0, 0, 5, 5] = 1.2  # sigmoid 0.77: outside
    for quirks in (False, True):
        table = per_pixel_sine_table(h, w, 16, column_first=quirks)
        expected = torch.stack([table[y * w + x] for y, x in band_pixels]).mean(0)
        got = SumSinusoidalMaskEmbedding(16, column_first=quirks)(logits)[0, 0]
        assert torch.allclose(got, expected, atol=1e-5)
    # Row part first (matches the [y | x] centre embedding); the original implementation puts the column first.
    table = per_pixel_sine_table(h, w, 16)
    assert torch.allclose(table[1 * w + 0, :16], table[1 * w + 7, :16])  # same row -> same y part
    # The separable computation equals the dense table on random logits.
    rnd = torch.randn(2, 3, h, w)
    dense = (rnd.abs() < math.log(3)).float().flatten(2)
    expected = dense @ table / (dense.sum(-1, keepdim=True) + 1e-6)
    assert torch.allclose(emb(rnd), expected, atol=1e-5)


# ------------------------------------------------------------------------------------------------
# initial state
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("quirks", [False, True])
def test_initial_prediction_box_from_the_interm_mask(quirks):
    torch.manual_seed(0)
    dec = _decoder(**original_implementation_items(quirks)).eval()
    feats, mf = _inputs(2)
    with torch.no_grad():
        out = dec(feats, mf)
    init = out["aux_outputs"][0]
    assert torch.equal(init["pred_masks"], out["interm_outputs"]["pred_masks"])
    expected = inverse_sigmoid(bitmask_boxes_cxcywh(init["pred_masks"] > 0, quirks)).sigmoid()
    assert torch.allclose(init["pred_boxes"], expected, atol=1e-6)
    # Empty interm masks: whole image (corrected) or the original implementation's all-zero box.
    with torch.no_grad():
        dec.intern_mask_embed.layers[-1].weight.zero_()
        dec.intern_mask_embed.layers[-1].bias.zero_()
        out = dec(feats, mf)
    box = out["aux_outputs"][0]["pred_boxes"]
    target = torch.zeros(4) if quirks else torch.tensor([0.5, 0.5, 1.0, 1.0])
    assert torch.allclose(box, target.expand_as(box), atol=1e-4)

    keep = _decoder(initialize_box_type="no").eval()
    with torch.no_grad():
        out = keep(feats, mf)
    assert torch.allclose(out["aux_outputs"][0]["pred_boxes"], out["interm_outputs"]["pred_boxes"])


def test_centre_source_defaults():
    assert _decoder(semantic_ce_loss=True, num_classes=1).centre_from_mask_box
    assert not _decoder(semantic_ce_loss=True, num_classes=3).centre_from_mask_box
    assert not _decoder(semantic_ce_loss=False, num_classes=1).centre_from_mask_box
    assert _decoder(initial_pred=False).eval()(*_inputs(1))["aux_outputs"].__len__() == L - 1


# ------------------------------------------------------------------------------------------------
# config
# ------------------------------------------------------------------------------------------------
def _small_cfg():
    cfg = get_cfg()
    sim = cfg.MODEL.SIMASKFORMER
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = 1
    cfg.MODEL.SEM_SEG_HEAD.MASK_DIM = DIM
    sim.HIDDEN_DIM, sim.NUM_OBJECT_QUERIES, sim.NHEADS, sim.DIM_FEEDFORWARD = DIM, Q, 4, 64
    sim.DEC_LAYERS, sim.DEC_N_POINTS, sim.DN_NUM = L, 4, 6
    sim.SEMANTIC_CE_LOSS = True
    return cfg


def test_from_config_and_switch_keys():
    cfg = _small_cfg()
    cfg.MODEL.SIMASKFORMER.TRANSFORMER_DECODER_NAME = "SiMaskFormerDecoder"
    dec = build_transformer_decoder(cfg, DIM, True, name=cfg.MODEL.SIMASKFORMER.TRANSFORMER_DECODER_NAME)
    assert isinstance(dec, SiMaskFormerDecoder)
    assert dec.uome and dec.amr and not any(_original_flags(dec).values()) and dec.centre_from_mask_box
    assert dec.class_embed.out_features == 2 and len(dec.layers) == L
    cfg.MODEL.SIMASKFORMER.UOME = False
    cfg.MODEL.SIMASKFORMER.AMR = False
    cfg.MODEL.SIMASKFORMER.ORIGINAL_QUIRKS = True
    dec = SiMaskFormerDecoder(cfg, DIM, True)
    assert not dec.uome and not dec.amr and all(_original_flags(dec).values()) and dec.denoiser.original_mask_noise
    out = dec.train()(*_inputs(2), _targets([1, 1], num_classes=1))
    assert out["pred_logits"].shape == (2, Q, 2)


ABLATION_DIRS = [
    ("configs/isic2018/semantic-segmentation/ablations", "../simaskformer_R50_bs16_steplr.yaml"),
    ("configs/quickstart/ablations", "../simaskformer_tiny_synthetic.yaml"),
]


def _flat(node, prefix=""):
    out = {}
    for k, v in node.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


# The original implementation's behaviour is two keys: the decoder quirks and the data pipeline's D2.
TWO_KEY_ABLATIONS = {"original_quirks.yaml": {"MODEL.SIMASKFORMER.ORIGINAL_QUIRKS", "INPUT.ROTATION.ONCE_PER_RUN"}}


@pytest.mark.parametrize("folder,base", ABLATION_DIRS)
def test_ablation_configs_change_one_switch(folder, base):
    files = sorted(glob.glob(os.path.join(ROOT, folder, "*.yaml")))
    assert len(files) >= 8
    switches = set()
    for f in files:
        with open(f) as fh:
            raw = yaml.safe_load(fh)
        assert raw.pop("_BASE_") == base, f
        raw.pop("OUTPUT_DIR", None)
        keys = _flat(raw)
        if os.path.basename(f) in TWO_KEY_ABLATIONS:
            assert set(keys) == TWO_KEY_ABLATIONS[os.path.basename(f)], (f, keys)
        else:
            assert len(keys) == 1 and next(iter(keys)).startswith("MODEL.SIMASKFORMER."), (f, keys)
        switches.add(tuple(keys.items()))
    assert len(switches) == len(files)  # no two files make the same change
    base_path = os.path.normpath(os.path.join(ROOT, folder, base))
    if not os.path.isfile(base_path):
        pytest.skip(f"base config {base_path} not present")
    ref = get_cfg()
    ref.merge_from_file(base_path)
    ref_flat = _flat(ref)
    for f in files:
        cfg = get_cfg()
        cfg.merge_from_file(f)
        diff = {k for k, v in _flat(cfg).items() if ref_flat.get(k) != v} - {"OUTPUT_DIR"}
        assert len(diff) == len(TWO_KEY_ABLATIONS.get(os.path.basename(f), "x")), (f, diff)
