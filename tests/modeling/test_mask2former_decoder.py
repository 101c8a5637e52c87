import pytest
import torch

from skinformer.config import get_cfg
from skinformer.modeling import TRANSFORMER_DECODER_REGISTRY, build_transformer_decoder
from skinformer.modeling.transformer_decoder import MultiScaleMaskedTransformerDecoder


def _decoder(**kw):
    args = dict(num_classes=3, hidden_dim=32, num_queries=5, nheads=4, dim_feedforward=64, dec_layers=4, mask_dim=16)
    args.update(kw)
    return MultiScaleMaskedTransformerDecoder(32, **args)


def _inputs(b=2):
    torch.manual_seed(0)
    ms = [torch.randn(b, 32, 2, 3), torch.randn(b, 32, 4, 6), torch.randn(b, 32, 8, 12)]
    return ms, torch.randn(b, 16, 16, 24)


@pytest.mark.parametrize("class_loss,width", [("ce", 4), ("focal", 3)])
def test_output_contract(class_loss, width):
    dec = _decoder(class_loss=class_loss)
    ms, mf = _inputs()
    out = dec(ms, mf)
    assert out["pred_logits"].shape == (2, 5, width)
    assert out["pred_masks"].shape == (2, 5, 16, 24)
    # initial prediction + first 3 layers; the final (4th layer) is the top level
    assert len(out["aux_outputs"]) == 4
    for aux in out["aux_outputs"]:
        assert set(aux) == {"pred_logits", "pred_masks"}
        assert aux["pred_logits"].shape == (2, 5, width) and aux["pred_masks"].shape == (2, 5, 16, 24)
    assert "pred_boxes" not in out and "dn_outputs" not in out


def test_backward_and_targets_ignored():
    dec = _decoder()
    ms, mf = _inputs()
    out = dec(ms, mf, targets=[{"labels": torch.tensor([0])}] * 2)
    loss = out["pred_logits"].sum() + out["pred_masks"].sum() + sum(a["pred_masks"].sum() for a in out["aux_outputs"])
    loss.backward()
    assert dec.query_feat.weight.grad is not None and dec.level_embed.weight.grad is not None


def test_fully_masked_queries_stay_finite():
    # Mask features that make every mask logit very negative: every query's attention mask is all
    # True; such rows must be unmasked, or softmax over nothing gives NaN.
    dec = _decoder()
    ms, _ = _inputs()
    with torch.no_grad():
        dec.mask_embed.layers[-1].weight.zero_()
        dec.mask_embed.layers[-1].bias.fill_(1.0)
    out = dec(ms, torch.full((2, 16, 16, 24), -50.0))
    assert torch.isfinite(out["pred_logits"]).all()


def test_attention_mask_levels_round_robin():
    dec = _decoder(dec_layers=4)
    ms, mf = _inputs(1)
    _, _, attn = dec.forward_prediction_heads(torch.randn(1, 5, 32), mf, (4, 6))
    assert attn.shape == (4, 5, 24) and attn.dtype == torch.bool


def test_from_config():
    assert "MultiScaleMaskedTransformerDecoder" in TRANSFORMER_DECODER_REGISTRY
    cfg = get_cfg()
    node = cfg.MODEL.MASK_FORMER
    node.HIDDEN_DIM, node.NUM_OBJECT_QUERIES, node.NHEADS, node.DIM_FEEDFORWARD, node.DEC_LAYERS = 32, 7, 4, 64, 3
    cfg.MODEL.SEM_SEG_HEAD.MASK_DIM = 16
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = 2
    dec = build_transformer_decoder(cfg, 32)
    assert dec.num_layers == 2  # DEC_LAYERS counts the initial prediction
    ms, mf = _inputs()
    out = dec(ms, mf)
    assert out["pred_logits"].shape == (2, 7, 3) and len(out["aux_outputs"]) == 2
    # the name argument overrides the config
    dec2 = build_transformer_decoder(cfg, 32, name="MultiScaleMaskedTransformerDecoder")
    assert isinstance(dec2, MultiScaleMaskedTransformerDecoder)
