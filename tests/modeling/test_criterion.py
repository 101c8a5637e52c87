import pytest
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

from skinformer.modeling.criterion import LOSS_KEYS, SetCriterion, build_weight_dict
from skinformer.modeling.matcher import HungarianMatcher

K = 2


def _pred_set(B, Q, ce=True, boxes=True, h=8, w=8):
    out = {
        "pred_logits": torch.randn(B, Q, K + 1 if ce else K, requires_grad=True),
        "pred_masks": torch.randn(B, Q, h, w, requires_grad=True),
    }
    if boxes:
        out["pred_boxes"] = torch.rand(B, Q, 4).mul(0.5).add(0.25).requires_grad_()
    return out


def _outputs(B=2, Q=5, n_aux=2, ce=True, dn_groups=0, single_pad=2, interm=True):
    out = _pred_set(B, Q, ce)
    out["aux_outputs"] = [_pred_set(B, Q, ce) for _ in range(n_aux)]
    if interm:
        out["interm_outputs"] = _pred_set(B, Q, ce)
        out["pred_proposal_cost"] = torch.rand(B, Q, requires_grad=True)
    if dn_groups:
        dn = _pred_set(B, dn_groups * single_pad, ce)
        dn["aux_outputs"] = [_pred_set(B, dn_groups * single_pad, ce) for _ in range(n_aux)]
        out["dn_outputs"] = {"outputs": dn, "num_groups": dn_groups, "single_pad": single_pad}
    return out


def _targets(counts=(2, 1), size=32):
    targets = []
    for n in counts:
        masks = torch.zeros(n, size, size)
        for i in range(n):
            masks[i, 4 * i: 4 * i + 10, 3: 20] = 1
        targets.append({"labels": torch.arange(n) % K, "masks": masks,
                        "boxes": torch.tensor([[0.3 + 0.1 * i, 0.4, 0.2, 0.3] for i in range(n)]).reshape(n, 4)})
    return targets


def _criterion(ce=True, **kw):
    matcher = HungarianMatcher(cost_class=2, cost_mask=5, cost_dice=5, cost_box=5, cost_giou=2, num_points=64,
                               class_loss="ce" if ce else "focal")
    args = dict(weight_dict={}, eos_coef=0.1, losses=["labels", "masks", "boxes"], num_points=64,
                oversample_ratio=3.0, importance_sample_ratio=0.75, class_loss="ce" if ce else "focal")
    args.update(kw)
    return SetCriterion(K, matcher, **args)


@pytest.mark.parametrize("ce", [True, False])
def test_loss_keys_stable_with_and_without_dn(ce):
    torch.manual_seed(0)
    crit = _criterion(ce, dn_enabled=True)
    with_dn = crit(_outputs(ce=ce, dn_groups=2), _targets())
    without = crit(_outputs(ce=ce, dn_groups=0), _targets())
    assert set(with_dn) == set(without)
    base = ["loss_ce", "loss_mask", "loss_dice", "loss_bbox", "loss_giou"]
    expected = set(base)
    for s in ["_0", "_1", "_interm", "_dn", "_dn_0", "_dn_1"]:
        expected |= {k + s for k in base}
    assert set(with_dn) == expected | {"proposal_loss"}
    # placeholders are zeros that are part of the graph (backward works, gradients are zero)
    out = _outputs(ce=ce)
    losses = crit(out, _targets())
    assert all(losses[k].item() == 0 for k in losses if "_dn" in k)
    sum(losses.values()).backward()
    assert out["pred_logits"].grad is not None
    for v in with_dn.values():
        assert torch.isfinite(v) and v.dim() == 0


def test_no_dn_keys_when_dn_disabled():
    crit = _criterion(dn_enabled=False)
    assert not any("_dn" in k for k in crit(_outputs(interm=False), _targets()))


def test_dn_indices():
    targets = _targets((2, 0, 1))
    idx = SetCriterion.dn_indices(targets, num_groups=2, single_pad=3)
    assert idx[0][0].tolist() == [0, 1, 3, 4] and idx[0][1].tolist() == [0, 1, 0, 1]
    assert idx[1][0].numel() == 0
    assert idx[2][0].tolist() == [0, 3] and idx[2][1].tolist() == [0, 0]


def test_ce_and_focal_class_losses_by_hand():
    logits = torch.tensor([[[2.0, -1.0, 0.5], [0.1, 0.2, 0.3]]])
    outputs = {"pred_logits": logits, "pred_masks": torch.zeros(1, 2, 4, 4)}
    targets = [{"labels": torch.tensor([1]), "masks": torch.ones(1, 8, 8)}]
    indices = [(torch.tensor([1]), torch.tensor([0]))]
    ce = _criterion(True, losses=["labels"]).loss_labels(outputs, targets, indices, 1.0)["loss_ce"]
    ref = F.cross_entropy(logits[0], torch.tensor([2, 1]), weight=torch.tensor([1.0, 1.0, 0.1]))
    assert ce.item() == pytest.approx(ref.item(), rel=1e-6)

    flog = logits[..., :2]
    focal = _criterion(False, losses=["labels"]).loss_labels({"pred_logits": flog}, targets, indices, 2.0)["loss_ce"]
    onehot = torch.tensor([[[0.0, 0.0], [0.0, 1.0]]])
    p = flog.sigmoid()
    p_t = p * onehot + (1 - p) * (1 - onehot)
    alpha_t = 0.25 * onehot + 0.75 * (1 - onehot)
    ref = (alpha_t * F.binary_cross_entropy_with_logits(flog, onehot, reduction="none") * (1 - p_t) ** 2).sum() / 2.0
    assert focal.item() == pytest.approx(ref.item(), rel=1e-6)


def test_num_masks_normalisation():
    crit = _criterion(losses=["boxes"])
    # deterministic matching (no random mask points) so both calls assign alike
    crit.matcher = HungarianMatcher(cost_class=0, cost_mask=0, cost_dice=0, cost_box=1)
    assert crit.get_num_masks(_targets((2, 1)), "cpu") == 3.0
    assert crit.get_num_masks(_targets((0, 0)), "cpu") == 1.0  # clamped
    # boxes losses are a per-object average: one image or the same image twice give the same value
    torch.manual_seed(0)
    one = _outputs(B=1, n_aux=0, interm=False)
    two = {k: torch.cat([v, v]) for k, v in one.items() if k.startswith("pred_")}
    l1 = crit(one, _targets((2,)))
    l2 = crit(two, _targets((2, 2)))
    for k in ("loss_bbox", "loss_giou"):
        assert l1[k].item() == pytest.approx(l2[k].item(), rel=1e-5)


def test_empty_targets_give_finite_losses():
    crit = _criterion(dn_enabled=True)
    losses = crit(_outputs(), _targets((0, 0)))
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["loss_mask"].item() == 0 and losses["proposal_loss"].item() == 0


def _box_set(q_boxes):
    boxes = torch.tensor([q_boxes])
    return {"pred_logits": torch.zeros(1, len(q_boxes), K + 1), "pred_masks": torch.zeros(1, len(q_boxes), 4, 4),
            "pred_boxes": boxes}


def test_single_matching_uses_the_hungarian_solution_of_summed_costs():
    t0, t1 = [0.1, 0.5, 0.1, 0.1], [0.9, 0.5, 0.1, 0.1]
    targets = [{"labels": torch.tensor([0, 0]), "masks": torch.zeros(2, 8, 8), "boxes": torch.tensor([t0, t1])}]
    # final alone prefers q0->t0, q1->t1; the two aux sets prefer the swap, and so does the sum.
    outputs = _box_set([t0, t1])
    outputs["aux_outputs"] = [_box_set([t1, t0]), _box_set([t1, t0])]
    matcher = HungarianMatcher(cost_class=0, cost_mask=0, cost_dice=0, cost_box=1)

    def crit(single):
        return SetCriterion(K, matcher, {}, 0.1, ["labels", "boxes"], 16, 3.0, 0.75, single_matching=single)

    sml = crit(True).match_prediction_sets(outputs, targets)
    assert len(sml) == 3 and all(ind is sml[0] for ind in sml)
    summed = sum(matcher.compute_cost_matrices(s, targets)[0] for s in [outputs] + outputs["aux_outputs"])
    rows, cols = linear_sum_assignment(summed.numpy())
    assert sml[0][0][0].tolist() == rows.tolist() and sml[0][0][1].tolist() == cols.tolist() == [1, 0]

    per_layer = crit(False).match_prediction_sets(outputs, targets)
    assert per_layer[0][0][1].tolist() == [0, 1] and per_layer[1][0][1].tolist() == [1, 0]
    # every set is supervised with the shared assignment: the final boxes pay for the swap (L1 1.6 over 2 objects)
    losses = crit(True)(outputs, targets)
    assert losses["loss_bbox"].item() == pytest.approx(1.6 / 2) and losses["loss_bbox_0"].item() == pytest.approx(0.0)


@pytest.mark.parametrize("policy,expected_images", [("exclude", [0]), ("original", [0, 1])])
def test_proposal_loss_empty_images(policy, expected_images):
    crit = _criterion(proposal_empty_gt=policy)
    pred = torch.rand(2, 4)
    min_costs = [torch.tensor([1.0, 3.0, 2.0, 5.0]), torch.full((4,), 25.0)]
    targets = _targets((1, 0))
    loss = crit.loss_proposal(pred, min_costs, targets)
    t0 = (min_costs[0] - 1) / (4 + 1e-6)
    tgts = {0: t0, 1: torch.zeros(4)}  # the original implementation's fill value normalises to all zeros
    ref = torch.cat([(pred[b] - tgts[b]).abs() for b in expected_images]).mean()
    assert loss.item() == pytest.approx(ref.item(), rel=1e-5)
    with pytest.raises(ValueError, match="same selected tokens"):
        crit.loss_proposal(torch.rand(2, 3), min_costs, targets)


def test_weight_dict_layout():
    wd = build_weight_dict(4, 5, 5, 5, 2, box_loss=True, num_aux=9, two_stage=True, dn=True, proposal_weight=5)
    assert wd["loss_ce"] == 4 and wd["loss_giou_interm"] == 2 and wd["loss_dice_dn_8"] == 5
    assert wd["proposal_loss"] == 5 and "loss_bbox_9" not in wd
    # what a 9-layer SiMaskFormer returns (106 terms) all have weights
    returned = set()
    for s in [""] + [f"_{i}" for i in range(9)] + ["_interm", "_dn"] + [f"_dn_{i}" for i in range(9)]:
        returned |= {k + s for keys in LOSS_KEYS.values() for k in keys}
    returned.add("proposal_loss")
    assert len(returned) == 106 and returned <= set(wd)
    m2f = build_weight_dict(2, 5, 5, num_aux=9)
    assert len(m2f) == 30 and "loss_bbox" not in m2f


def test_grid_mask_losses_are_dense_losses_of_the_matched_pairs():
    torch.manual_seed(0)
    crit = _criterion(losses=["masks"], mask_sampling="grid")
    outputs = _outputs(B=2, Q=5, n_aux=0, interm=False)
    targets = _targets((2, 1), size=32)
    indices = crit.match_prediction_sets(outputs, targets)[0]
    losses = crit(outputs, targets)
    logits, labels = [], []
    for b, (q, t) in enumerate(indices):
        logits.append(outputs["pred_masks"][b, q].flatten(1))
        labels.append(F.interpolate(targets[b]["masks"][t][:, None], size=(8, 8), mode="bilinear",
                                    align_corners=False).flatten(1))
    logits, labels = torch.cat(logits), torch.cat(labels)
    bce = F.binary_cross_entropy_with_logits(logits, labels, reduction="none").mean(1).sum() / 3
    p = logits.sigmoid()
    dice = (1 - (2 * (p * labels).sum(1) + 1) / (p.sum(1) + labels.sum(1) + 1)).sum() / 3
    assert losses["loss_mask"].item() == pytest.approx(bce.item(), rel=1e-5)
    assert losses["loss_dice"].item() == pytest.approx(dice.item(), rel=1e-5)
    # deterministic (no random points) and differentiable
    assert torch.equal(losses["loss_mask"], crit(outputs, targets)["loss_mask"])
    (losses["loss_mask"] + losses["loss_dice"]).backward()
    assert outputs["pred_masks"].grad.abs().sum() > 0


def test_grid_and_point_mask_losses_agree_in_expectation():
    # Uniform points (no importance sampling) estimate the per-pixel mean the grid computes, where
    # bilinear sampling changes nothing: logits constant per query, targets aligned to the 4-px cells.
    torch.manual_seed(0)
    outputs = _outputs(B=2, Q=5, n_aux=0, interm=False)
    outputs["pred_masks"] = torch.randn(2, 5, 1, 1).expand(-1, -1, 8, 8).contiguous()
    targets = _targets((2, 1), size=32)
    for t in targets:
        t["masks"].zero_()
        for i in range(len(t["masks"])):
            t["masks"][i, 4 * i: 4 * i + 16, 8: 20] = 1
    grid = _criterion(losses=["masks"], mask_sampling="grid")
    points = _criterion(losses=["masks"], num_points=20000, oversample_ratio=1.0, importance_sample_ratio=0.0)
    indices = grid.match_prediction_sets(outputs, targets)[0]
    g = grid.loss_masks(outputs, targets, indices, 3.0)
    p = points.loss_masks(outputs, targets, indices, 3.0)
    for k in ("loss_mask", "loss_dice"):
        assert p[k].item() == pytest.approx(g[k].item(), rel=0.03)


def test_grid_mask_losses_cover_denoising_and_empty_images():
    torch.manual_seed(0)
    crit = _criterion(mask_sampling="grid", dn_enabled=True)
    losses = crit(_outputs(B=2, Q=5, n_aux=1, dn_groups=3, single_pad=2), _targets((2, 0)))
    assert {"loss_mask_dn", "loss_dice_dn_0", "loss_mask_interm"} <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values())


def test_unknown_mask_sampling_is_named():
    with pytest.raises(ValueError, match="mask_sampling.*'dense'"):
        _criterion(mask_sampling="dense")


def test_matched_pairs_of_all_queries_in_order_are_a_view_with_the_same_gradient():
    torch.manual_seed(0)
    pred = torch.randn(3, 4, 5, 5, requires_grad=True)
    full = [(torch.arange(4), torch.tensor([2, 0, 1, 3])) for _ in range(3)]
    partial = [(torch.tensor([1, 3]), torch.tensor([0, 1])), (torch.arange(4), torch.arange(4)),
               (torch.tensor([], dtype=torch.long), torch.tensor([], dtype=torch.long))]
    for indices in (full, partial):
        got = SetCriterion._matched(pred, indices)
        want = pred[SetCriterion._src_idx(indices, pred.device)]
        assert torch.equal(got, want)
        weights = torch.randn_like(want)
        (g_got,) = torch.autograd.grad((got * weights).sum(), pred)
        (g_want,) = torch.autograd.grad((want * weights).sum(), pred)
        assert torch.equal(g_got, g_want)
    assert SetCriterion._matched(pred, full).data_ptr() == pred.data_ptr()  # no copy
