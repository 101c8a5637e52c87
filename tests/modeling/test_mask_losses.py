"""mask_losses.sigmoid_ce_dice_loss: the fused BCE + dice of matched mask pairs."""
import pytest
import torch
import torch.nn.functional as F

from skinformer.modeling.mask_losses import sigmoid_ce_dice_loss


def _textbook(logits, targets, num_masks):
    """Mask2Former's two losses written out, differentiated by autograd."""
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none").mean(1).sum() / num_masks
    p = logits.sigmoid()
    dice = (1 - (2 * (p * targets).sum(-1) + 1) / (p.sum(-1) + targets.sum(-1) + 1)).sum() / num_masks
    return bce, dice


def _pairs(n=6, p=500, seed=0, soft=False, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(n, p, generator=g) * 4).to(dtype)
    targets = torch.rand(n, p, generator=g).to(dtype)
    if not soft:
        targets = (targets > 0.6).to(dtype)
    targets[0] = 0  # an empty target mask
    return logits, targets


@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("weights", [(2.0, 5.0), (1.0, 0.0), (0.0, 1.0)])
def test_values_and_gradient_match_the_textbook_losses(soft, weights):
    logits, targets = _pairs(soft=soft)
    x = logits.clone().requires_grad_()
    bce, dice = sigmoid_ce_dice_loss(x, targets, 3.0)
    x_ref = logits.clone().requires_grad_()
    bce_ref, dice_ref = _textbook(x_ref, targets, 3.0)
    torch.testing.assert_close(bce, bce_ref, rtol=1e-6, atol=0)
    torch.testing.assert_close(dice, dice_ref, rtol=1e-6, atol=0)
    (weights[0] * bce + weights[1] * dice).backward()
    (weights[0] * bce_ref + weights[1] * dice_ref).backward()
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-5, atol=1e-9)


def test_gradient_passes_gradcheck_in_float64():
    logits, targets = _pairs(n=3, p=20, dtype=torch.float64, soft=True)
    logits.requires_grad_()
    assert torch.autograd.gradcheck(lambda x: sigmoid_ce_dice_loss(x, targets, 2.0), (logits,))


def test_flattens_each_pair_and_scales_by_num_masks():
    logits, targets = _pairs(n=4, p=64)
    a = sigmoid_ce_dice_loss(logits.view(4, 8, 8), targets.view(4, 8, 8), 1.0)
    b = sigmoid_ce_dice_loss(logits, targets, 4.0)
    torch.testing.assert_close(a[0] / 4, b[0])
    torch.testing.assert_close(a[1] / 4, b[1])


def test_bad_targets_are_named():
    logits, targets = _pairs()
    with pytest.raises(ValueError, match="same shape"):
        sigmoid_ce_dice_loss(logits, targets[:, :10], 1.0)
    with pytest.raises(ValueError, match="targets require grad"):
        sigmoid_ce_dice_loss(logits, targets.requires_grad_(), 1.0)
