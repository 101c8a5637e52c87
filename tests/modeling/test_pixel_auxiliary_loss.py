"""The training-only auxiliary per-pixel loss on the mask features."""
import pytest
import torch

from skinformer.modeling import build_model
from skinformer.modeling.pixel_auxiliary_loss import PixelAuxiliaryLoss

from mask_former_toy import make_input, tiny_cfg


def test_class_targets_are_per_class_unions_averaged_over_cells():
    aux = PixelAuxiliaryLoss(mask_dim=4, num_classes=2, weight=1.0)
    masks = torch.zeros(3, 8, 8)
    masks[0, :4, :4] = 1  # class 1
    masks[1, 4:, 4:] = 1  # class 0
    masks[2, :2, :] = 1  # class 1 again, overlapping the first
    target = aux.class_targets([{"labels": torch.tensor([1, 0, 1]), "masks": masks}], (2, 2))
    assert target.shape == (1, 2, 2, 2)
    assert torch.allclose(target[0, 0], torch.tensor([[0.0, 0.0], [0.0, 1.0]]))
    # class 1: the top-left cell is full; the top-right cell has the 2-row strip (8 of 16 pixels)
    assert torch.allclose(target[0, 1], torch.tensor([[1.0, 0.5], [0.0, 0.0]]))
    empty = aux.class_targets([{"labels": torch.zeros(0, dtype=torch.long), "masks": torch.zeros(0, 8, 8)}], (2, 2))
    assert empty.abs().sum() == 0


def test_loss_is_small_for_a_perfect_classifier_and_large_for_the_opposite():
    aux = PixelAuxiliaryLoss(mask_dim=1, num_classes=1, weight=2.0)
    masks = torch.zeros(1, 8, 8)
    masks[0, :, :4] = 1
    feats = (masks[None] * 2 - 1) * 20  # +20 inside the mask, -20 outside: confident and right
    with torch.no_grad():
        aux.classifier.weight.fill_(1.0)
        aux.classifier.bias.zero_()
    good = aux(feats, [{"labels": torch.tensor([0]), "masks": masks}])["loss_pixel_aux"]
    bad = aux(-feats, [{"labels": torch.tensor([0]), "masks": masks}])["loss_pixel_aux"]
    assert good < 0.05 and bad > 20


@pytest.mark.parametrize("arch", ["MaskFormer", "SiMaskFormer"])
def test_switch_adds_a_trained_loss_and_leaves_inference_unchanged(arch):
    cfg = tiny_cfg(arch)
    node = cfg.MODEL.SIMASKFORMER if arch == "SiMaskFormer" else cfg.MODEL.MASK_FORMER
    torch.manual_seed(0)
    plain = build_model(cfg)
    node.PIXEL_AUX_WEIGHT = 0.5
    torch.manual_seed(0)
    with_aux = build_model(cfg)
    assert plain.pixel_aux_loss is None and with_aux.pixel_aux_loss.weight == 0.5
    batch = [make_input(seed=0), make_input(seed=1)]
    losses = with_aux.train()(batch)
    assert "loss_pixel_aux" in losses and torch.isfinite(losses["loss_pixel_aux"])
    losses["loss_pixel_aux"].backward()
    assert with_aux.pixel_aux_loss.classifier.weight.grad.abs().sum() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in with_aux.pixel_decoder.parameters())
    # same weights everywhere else -> identical inference
    state = {k: v for k, v in with_aux.state_dict().items() if not k.startswith("pixel_aux_loss.")}
    plain.load_state_dict(state)
    with torch.no_grad():
        a = plain.eval()([make_input(seed=2)])[0]["sem_seg"]
        b = with_aux.eval()([make_input(seed=2)])[0]["sem_seg"]
    torch.testing.assert_close(a, b)
