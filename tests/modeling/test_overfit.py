"""A tiny mask-transformer must be able to memorise one synthetic image (Dice > 0.9).

Each test trains for at most 200 iterations (about 15–30 s on 2 idle CPU cores)."""
import pytest
import torch

from mask_former_toy import dice, make_input, tiny_cfg
from skinformer.modeling import build_model


def _eval_dice(model, sample, gt):
    model.eval()
    with torch.no_grad():
        sem = model([sample])[0]["sem_seg"][0]
    return dice(sem > 0.5, gt)


def _overfit(arch: str, max_iters: int = 200, lr: float = 1e-3, every: int = 10):
    """Train a tiny model on one image; returns (Dice before, best Dice, iterations used)."""
    torch.manual_seed(0)
    model = build_model(tiny_cfg(arch))
    sample = make_input(64, 64, seed=0)
    gt = sample["instances"].gt_masks[0]
    before = _eval_dice(model, sample, gt)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    best = 0.0
    for it in range(1, max_iters + 1):
        model.train()
        losses = model([sample])
        opt.zero_grad()
        sum(losses.values()).backward()
        opt.step()
        if it % every == 0:
            best = max(best, _eval_dice(model, sample, gt))
            if best > 0.9:
                return before, best, it
    return before, best, max_iters


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["MaskFormer", "SiMaskFormer"])
def test_tiny_model_overfits_one_image(arch):
    before, best, iters = _overfit(arch)
    assert before < 0.9  # the untrained model does not already solve it
    assert best > 0.9, f"{arch}: Dice {best:.3f} after {iters} iterations"
