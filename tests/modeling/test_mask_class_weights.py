"""MODEL.LOSS.CLASS_WEIGHTS in mask-classification models: the class CE of matched queries."""
import pytest
import torch
import torch.nn.functional as F
from mask_former_toy import make_input, tiny_cfg

from skinformer.modeling import build_model
from skinformer.modeling.criterion import SetCriterion
from skinformer.modeling.matcher import HungarianMatcher

K = 3


def _crit(class_weights, class_loss="ce"):
    matcher = HungarianMatcher(cost_class=1, cost_mask=0, cost_dice=0, num_points=16, class_loss=class_loss)
    return SetCriterion(K, matcher, {}, 0.1, ["labels"], 16, 3.0, 0.75, class_loss=class_loss,
                        class_weights=class_weights)


def test_class_weights_enter_the_query_ce():
    crit = _crit([0.5, 2.0, 4.0, 9.0])  # label-map style list: the 4th ("no class" pixels) is not used
    torch.testing.assert_close(crit.empty_weight, torch.tensor([0.5, 2.0, 4.0, 0.1]))
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(1, 4, K + 1, generator=g)
    targets = [{"labels": torch.tensor([2, 0])}]
    indices = [(torch.tensor([1, 3]), torch.tensor([0, 1]))]
    got = crit.loss_labels({"pred_logits": logits}, targets, indices, 2.0)["loss_ce"]
    target_classes = torch.tensor([[K, 2, K, 0]])
    expected = F.cross_entropy(logits.transpose(1, 2), target_classes, torch.tensor([0.5, 2.0, 4.0, 0.1]))
    torch.testing.assert_close(got, expected)


def test_class_weights_need_ce_and_right_length():
    with pytest.raises(ValueError, match="MODEL.LOSS.CLASS_WEIGHTS"):
        _crit([1.0, 2.0])
    with pytest.raises(ValueError, match="MODEL.LOSS.CLASS_WEIGHTS"):
        _crit([1.0, 2.0, 3.0], class_loss="focal")
    torch.testing.assert_close(_crit(None).empty_weight, torch.tensor([1.0, 1.0, 1.0, 0.1]))


def test_mask_former_built_from_config_trains_with_class_weights():
    cfg = tiny_cfg("MaskFormer", num_classes=1)
    cfg.MODEL.LOSS.CLASS_WEIGHTS = [3.0, 1.0]
    torch.manual_seed(0)
    model = build_model(cfg).train()
    torch.testing.assert_close(model.criterion.empty_weight, torch.tensor([3.0, cfg.MODEL.MASK_FORMER.NO_OBJECT_WEIGHT]))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for it in range(2):
        losses = model([make_input(seed=it)])
        total = sum(losses.values())
        assert torch.isfinite(total)
        opt.zero_grad()
        total.backward()
        opt.step()
