import itertools

import pytest
import torch
import torch.nn.functional as F

from skinformer.modeling.mask_losses import batch_dice_cost, batch_sigmoid_ce_cost
from skinformer.modeling.matcher import HungarianMatcher
from skinformer.modeling.point_sample import (
    get_uncertain_point_coords_with_randomness, point_sample, resize_target_masks,
)


def test_class_only_hand_made_assignment():
    logits = torch.tensor([[[0.0, 5.0, 0.0], [5.0, 0.0, 0.0], [0.0, 0.0, 0.0]]])  # Q=3, K=2 (+ no-object)
    outputs = {"pred_logits": logits, "pred_masks": torch.zeros(1, 3, 4, 4)}
    targets = [{"labels": torch.tensor([0, 1]), "masks": torch.zeros(2, 16, 16)}]
    m = HungarianMatcher(cost_class=1, cost_mask=0, cost_dice=0)
    (rows, cols), = m(outputs, targets)
    assert dict(zip(rows.tolist(), cols.tolist())) == {1: 0, 0: 1}
    cost, = m.compute_cost_matrices(outputs, targets)
    torch.testing.assert_close(cost, -logits[0].softmax(-1)[:, [0, 1]])


def test_focal_class_cost_and_seed_quirk():
    logits = torch.tensor([[[1.0, -2.0, 0.5]]])
    targets = [{"labels": torch.tensor([1]), "masks": torch.zeros(1, 4, 4)}]
    outputs = {"pred_logits": logits, "pred_masks": torch.zeros(1, 1, 4, 4)}
    p = torch.sigmoid(torch.tensor(-2.0))
    expected = 0.25 * (1 - p) ** 2 * -torch.log(p + 1e-8) - 0.75 * p ** 2 * -torch.log(1 - p + 1e-8)
    focal = HungarianMatcher(cost_class=1, cost_mask=0, cost_dice=0, class_loss="focal")
    torch.testing.assert_close(focal.compute_cost_matrices(outputs, targets)[0][0, 0], expected)
    # CE mode with the original implementation's quirk: the same focal formula on the CE logits
    quirk = HungarianMatcher(cost_class=1, cost_mask=0, cost_dice=0, class_loss="ce", class_cost_type="focal")
    torch.testing.assert_close(quirk.compute_cost_matrices(outputs, targets)[0][0, 0], expected)
    with pytest.raises(ValueError, match="class_cost_type"):
        HungarianMatcher(class_cost_type="l2")


def test_pairwise_mask_costs_match_per_pair_losses():
    torch.manual_seed(0)
    logits, targets = torch.randn(3, 40), (torch.rand(2, 40) > 0.5).float()
    bce = batch_sigmoid_ce_cost(logits, targets)
    dice = batch_dice_cost(logits, targets)
    for q in range(3):
        for t in range(2):
            ref = F.binary_cross_entropy_with_logits(logits[q], targets[t])
            assert bce[q, t].item() == pytest.approx(ref.item(), rel=1e-5)
            p = logits[q].sigmoid()
            ref = 1 - (2 * (p * targets[t]).sum() + 1) / (p.sum() + targets[t].sum() + 1)
            assert dice[q, t].item() == pytest.approx(ref.item(), rel=1e-5)


def test_pairwise_bce_cost_stays_exact_for_confident_logits():
    # the cost is Σ softplus(x) - x·t: check the cancellation against per-pair BCE for large |x|
    torch.manual_seed(0)
    targets = (torch.rand(2, 4096) > 0.5).float()
    logits = torch.where(torch.rand(3, 4096) > 0.5, 30.0, -30.0) * (2 * targets[0] - 1) + torch.randn(3, 4096)
    cost = batch_sigmoid_ce_cost(logits, targets)
    for q in range(3):
        for t in range(2):
            ref = F.binary_cross_entropy_with_logits(logits[q].double(), targets[t].double())
            assert cost[q, t].item() == pytest.approx(ref.item(), rel=1e-5, abs=1e-5)


@pytest.mark.parametrize("sampling", ["points", "grid"])
def test_mask_costs_pick_the_overlapping_query(sampling):
    # GT 0 = left half, GT 1 = right half; query 2 predicts the left half, query 0 the right half.
    gt = torch.zeros(2, 32, 32)
    gt[0, :, :16] = 1
    gt[1, :, 16:] = 1
    pred = torch.full((3, 8, 8), -8.0)
    pred[2, :, :4] = 8
    pred[0, :, 4:] = 8
    outputs = {"pred_logits": torch.zeros(1, 3, 2), "pred_masks": pred[None]}
    targets = [{"labels": torch.tensor([0, 0]), "masks": gt}]
    for kw in (dict(cost_mask=1, cost_dice=0), dict(cost_mask=0, cost_dice=1)):
        (rows, cols), = HungarianMatcher(cost_class=0, num_points=256, mask_sampling=sampling, **kw)(outputs, targets)
        assert dict(zip(rows.tolist(), cols.tolist())) == {2: 0, 0: 1}


def test_box_costs():
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.2], [0.2, 0.2, 0.1, 0.1]]])
    tgt = torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.25, 0.2, 0.1, 0.1]])
    outputs = {"pred_logits": torch.zeros(1, 2, 2), "pred_masks": torch.zeros(1, 2, 4, 4), "pred_boxes": boxes}
    targets = [{"labels": torch.tensor([0, 0]), "masks": torch.zeros(2, 8, 8), "boxes": tgt}]
    l1 = HungarianMatcher(cost_class=0, cost_mask=0, cost_dice=0, cost_box=1)
    cost, = l1.compute_cost_matrices(outputs, targets)
    torch.testing.assert_close(cost, torch.cdist(boxes[0], tgt, p=1))
    giou = HungarianMatcher(cost_class=0, cost_mask=0, cost_dice=0, cost_giou=1)
    cost, = giou.compute_cost_matrices(outputs, targets)
    assert cost[0, 0].item() == pytest.approx(-1.0)
    # (0.2,0.2,.1,.1) vs (0.25,0.2,.1,.1): overlap 0.05x0.1, union 0.015, hull = union -> giou = 1/3
    assert cost[1, 1].item() == pytest.approx(-1 / 3, abs=1e-5)
    # boxes are ignored when the predictions have none
    outputs.pop("pred_boxes")
    assert l1.compute_cost_matrices(outputs, targets)[0].abs().sum() == 0


def test_assignment_is_optimal_on_random_costs():
    torch.manual_seed(0)
    for _ in range(5):
        cost = torch.rand(5, 3)
        (rows, cols), = HungarianMatcher.assign([cost])
        best = min(sum(cost[q, t] for t, q in enumerate(perm)) for perm in itertools.permutations(range(5), 3))
        assert cost[rows, cols].sum().item() == pytest.approx(best.item())
        assert rows.dtype == torch.int64 and rows.tolist() == sorted(rows.tolist())


def test_empty_targets_and_min_cost():
    outputs = {"pred_logits": torch.randn(2, 4, 3), "pred_masks": torch.randn(2, 4, 8, 8)}
    targets = [{"labels": torch.tensor([1]), "masks": torch.ones(1, 32, 32)},
               {"labels": torch.zeros(0, dtype=torch.int64), "masks": torch.zeros(0, 32, 32)}]
    m = HungarianMatcher(num_points=64)
    indices, mins = m(outputs, targets, return_min_cost_per_query=True)
    assert len(indices[0][0]) == 1 and len(indices[1][0]) == 0
    costs = m.compute_cost_matrices(outputs, targets)
    assert costs[1].shape == (4, 0)
    assert mins[1].tolist() == [25.0] * 4  # the original implementation's fill value for images without GT
    assert mins[0].shape == (4,)


def test_non_finite_cost_raises():
    with pytest.raises(FloatingPointError, match="image 0"):
        HungarianMatcher.assign([torch.tensor([[float("nan")]])])


def test_point_sample_and_importance_sampling():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    # pixel centres with align_corners=False
    pts = torch.tensor([[[0.125, 0.125], [0.875, 0.375]]])
    assert point_sample(x, pts).flatten().tolist() == [0.0, 7.0]
    logits = torch.randn(3, 1, 8, 8)
    coords = get_uncertain_point_coords_with_randomness(logits, lambda l: -l.abs(), 20, 3.0, 0.75)
    assert coords.shape == (3, 20, 2) and coords.min() >= 0 and coords.max() <= 1


def test_resize_target_masks_reads_the_cell_centres():
    # the grid mode's resized ground truth is what point sampling reads at the centre of each cell
    torch.manual_seed(0)
    masks = (torch.rand(3, 32, 24) > 0.5).float()
    resized = resize_target_masks(masks, (8, 6))
    ys, xs = torch.meshgrid((torch.arange(8) + 0.5) / 8, (torch.arange(6) + 0.5) / 6, indexing="ij")
    centres = torch.stack([xs, ys], -1).reshape(1, -1, 2).expand(3, -1, -1)
    expected = point_sample(masks[:, None], centres).reshape(3, 8, 6)
    assert torch.allclose(resized, expected, atol=1e-6)
    assert resize_target_masks(masks, (32, 24)).data_ptr() == masks.data_ptr()
    assert resize_target_masks(torch.zeros(0, 32, 24), (8, 6)).shape == (0, 8, 6)


def test_grid_mask_costs_are_dense_costs_on_the_resized_targets():
    torch.manual_seed(0)
    gt = torch.zeros(2, 32, 32)
    gt[0, :, :16] = 1
    gt[1, 4:20, 10:30] = 1
    pred = torch.randn(1, 3, 8, 8)
    outputs = {"pred_logits": torch.zeros(1, 3, 2), "pred_masks": pred}
    targets = [{"labels": torch.tensor([0, 0]), "masks": gt}]
    matcher = HungarianMatcher(cost_class=0, cost_mask=2, cost_dice=3, mask_sampling="grid")
    cost, = matcher.compute_cost_matrices(outputs, targets)
    small = resize_target_masks(gt, (8, 8)).flatten(1)
    flat = pred[0].flatten(1)
    expected = 2 * batch_sigmoid_ce_cost(flat, small) + 3 * batch_dice_cost(flat, small)
    assert torch.allclose(cost, expected, atol=1e-6)
    # no random points: the same cost every call
    assert torch.equal(cost, matcher.compute_cost_matrices(outputs, targets)[0])


def test_unknown_mask_sampling_is_named():
    with pytest.raises(ValueError, match="mask_sampling.*'dense'"):
        HungarianMatcher(mask_sampling="dense")
