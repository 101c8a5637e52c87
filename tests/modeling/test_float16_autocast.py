"""SiMaskFormer under float16 autocast at 1024² input (pixel counts past float16's 65,504)."""
import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mask_former_toy import ellipse_mask, make_input, tiny_cfg  # noqa: E402

from skinformer.modeling import build_model  # noqa: E402
from skinformer.modeling.transformer_decoder.mask_embedding import SumSinusoidalMaskEmbedding  # noqa: E402


def test_band_embedding_counts_in_float32_under_float16_autocast():
    # A DN padding slot (logits 0) is all boundary band: 256·256 = 65,536 pixels at 1024² input.
    emb = SumSinusoidalMaskEmbedding(16)
    logits = torch.zeros(1, 2, 256, 256, dtype=torch.float16)
    logits[0, 1] = 5.0  # empty band -> zero embedding
    tables = emb.prepare(256, 256, logits.device, torch.float16)
    with torch.autocast("cpu", dtype=torch.float16):
        out = emb(logits, tables)
    assert out.dtype == torch.float16 and torch.isfinite(out).all()
    ref = emb(logits.float(), emb.prepare(256, 256, logits.device, torch.float32))
    assert torch.allclose(out.float(), ref, atol=2e-3)
    assert out[0, 1].abs().max() == 0


@pytest.mark.slow
def test_simaskformer_float16_autocast_at_1024_gives_finite_losses():
    torch.manual_seed(0)
    model = build_model(tiny_cfg("SiMaskFormer"))
    model.train()
    two = torch.stack([ellipse_mask(1024, 1024, 300, 300, 200, 150), ellipse_mask(1024, 1024, 700, 700, 150, 200)])
    one = ellipse_mask(1024, 1024, 500, 500, 300, 200)[None]
    # Different object counts: the second image has DN padding slots.
    batch = [make_input(1024, 1024, masks=two, classes=[0, 0], seed=0),
             make_input(1024, 1024, masks=one, classes=[0], seed=1)]
    with torch.autocast("cpu", dtype=torch.float16):
        losses = model(batch)
    bad = {k: float(v) for k, v in losses.items() if not torch.isfinite(v)}
    assert not bad, f"non-finite losses under float16 autocast: {bad}"
    assert "loss_mask_dn" in losses
