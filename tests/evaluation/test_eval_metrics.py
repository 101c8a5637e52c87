"""Metric definitions on hand-made counts / masks with known answers."""
import math

import numpy as np
import pytest
import torch

from skinformer.evaluation import metrics as M
from skinformer.structures.label_space import LabelSpace


def counts(tp, fp, fn, tn):
    return torch.tensor([[tp, fp, fn, tn]], dtype=torch.int64)


def per_image(tp, fp, fn, tn):
    return {k: float(v[0]) for k, v in M.isic_task1_per_image(counts(tp, fp, fn, tn)).items()}


# ---------------------------------------------------------------------------------------------
# ISIC 2018 Task 1
# ---------------------------------------------------------------------------------------------
def test_task1_perfect():
    r = per_image(10, 0, 0, 30)
    assert r == {"threshold_jaccard": 1.0, "jaccard": 1.0, "dice": 1.0, "sensitivity": 1.0,
                 "specificity": 1.0, "accuracy": 1.0}


def test_task1_both_empty_counts_one():
    # official rule: Jaccard/Dice/sensitivity = 1 when their denominators are 0
    r = per_image(0, 0, 0, 40)
    assert r["jaccard"] == 1.0 and r["threshold_jaccard"] == 1.0 and r["dice"] == 1.0
    assert r["sensitivity"] == 1.0 and r["specificity"] == 1.0 and r["accuracy"] == 1.0


def test_task1_empty_gt_with_prediction():
    r = per_image(0, 5, 0, 35)
    assert r["jaccard"] == 0.0 and r["dice"] == 0.0 and r["threshold_jaccard"] == 0.0
    assert r["sensitivity"] == 1.0  # tp + fn == 0
    assert r["specificity"] == pytest.approx(35 / 40)
    assert r["accuracy"] == pytest.approx(35 / 40)


def test_task1_empty_prediction():
    r = per_image(0, 0, 8, 32)
    assert r["jaccard"] == 0.0 and r["sensitivity"] == 0.0 and r["specificity"] == 1.0
    assert r["accuracy"] == pytest.approx(32 / 40)


def test_task1_all_foreground_specificity_one():
    r = per_image(40, 0, 0, 0)
    assert r["specificity"] == 1.0  # tn + fp == 0


def test_task1_threshold_065():
    assert per_image(6, 0, 4, 10)["jaccard"] == pytest.approx(0.6)
    assert per_image(6, 0, 4, 10)["threshold_jaccard"] == 0.0
    assert per_image(7, 0, 3, 10)["threshold_jaccard"] == pytest.approx(0.7)
    # exactly 0.65 is kept (official: >= threshold)
    assert per_image(13, 7, 0, 0)["threshold_jaccard"] == pytest.approx(0.65)


def test_task1_summary_means_over_images_and_pooled():
    c = torch.tensor([[6, 0, 4, 10], [7, 0, 3, 10], [0, 0, 0, 20]])
    s = M.isic_task1_summary(M.isic_task1_statistics(c))
    assert s["jaccard"] == pytest.approx((0.6 + 0.7 + 1.0) / 3)
    assert s["threshold_jaccard"] == pytest.approx((0.0 + 0.7 + 1.0) / 3)
    assert s["pooled_iou"] == pytest.approx(13 / 20)
    assert s["pooled_dice"] == pytest.approx(26 / 33)
    assert s["pooled_precision"] == 1.0
    assert s["pooled_recall"] == pytest.approx(13 / 20)
    assert s["pooled_accuracy"] == pytest.approx(53 / 60)


def test_pooled_empty_denominators_count_zero():
    p = {k: float(v) for k, v in M.pooled_binary_metrics(torch.tensor([0, 0, 0, 40])).items()}
    assert p == {"precision": 0.0, "recall": 0.0, "accuracy": 1.0, "dice": 0.0, "iou": 0.0}
    s = M.isic_task1_summary(M.isic_task1_statistics(torch.tensor([[0, 0, 0, 40]])))
    assert s["jaccard"] == 1.0 and s["pooled_iou"] == 0.0


def test_task1_summary_no_images_is_nan():
    s = M.isic_task1_summary(M.isic_task1_statistics(torch.zeros(0, 4, dtype=torch.int64)))
    assert math.isnan(s["jaccard"]) and s["pooled_iou"] == 0.0


def test_statistics_add_like_concatenation():
    a = torch.tensor([[6, 0, 4, 10], [1, 2, 3, 4]])
    b = torch.tensor([[0, 0, 0, 20]])
    together = M.isic_task1_statistics(torch.cat([a, b]))
    assert torch.allclose(M.isic_task1_statistics(a) + M.isic_task1_statistics(b), together)


# ---------------------------------------------------------------------------------------------
# Counting
# ---------------------------------------------------------------------------------------------
def test_binary_confusion_with_valid():
    pred = torch.tensor([[1, 1, 0, 0, 1]], dtype=torch.bool)
    gt = torch.tensor([[1, 0, 1, 0, 1]], dtype=torch.bool)
    assert M.binary_confusion(pred, gt).tolist() == [2, 1, 1, 1]
    valid = torch.tensor([[1, 1, 1, 1, 0]], dtype=torch.bool)
    assert M.binary_confusion(pred, gt, valid).tolist() == [1, 1, 1, 1]
    with pytest.raises(ValueError, match="shape"):
        M.binary_confusion(pred, gt[:, :3])


def test_multilabel_confusion_matches_binary():
    g = torch.Generator().manual_seed(0)
    pred = torch.rand(5, 7, 9, generator=g) > 0.5
    gt = torch.rand(5, 7, 9, generator=g) > 0.3
    ml = M.multilabel_confusion(pred, gt)
    for k in range(5):
        assert ml[k].tolist() == M.binary_confusion(pred[k], gt[k]).tolist()


# ---------------------------------------------------------------------------------------------
# ISIC 2018 Task 2
# ---------------------------------------------------------------------------------------------
def test_task2_normalisation_changes_result():
    # attribute "a": image A (4 px): tp=fp=fn=tn=1; image B (16 px): tp=8, tn=8
    norm = torch.tensor([1, 1, 1, 1], dtype=torch.float64) / 4 + torch.tensor([8, 0, 0, 8], dtype=torch.float64) / 16
    absent = torch.tensor([0, 0, 0, 1.0 + 1.0], dtype=torch.float64)  # never present, never predicted
    fp_only = torch.tensor([0, 1, 0, 3], dtype=torch.float64) / 4 + torch.tensor([0, 0, 0, 1.0], dtype=torch.float64)
    r = M.isic_task2_summary(torch.stack([norm, absent, fp_only]), ["a", "b", "c"])
    assert r["jaccard-a"] == pytest.approx(0.75 / 1.25)  # 0.6; pooled raw counts would give 9/11
    assert r["dice-a"] == pytest.approx(1.5 / 2.0)
    assert r["jaccard-b"] == 1.0 and r["dice-b"] == 1.0
    assert r["jaccard-c"] == 0.0
    assert r["jaccard_micro"] == pytest.approx(0.75 / (0.75 + 0.5 + 0.25))
    assert r["dice_micro"] == pytest.approx(1.5 / (1.5 + 0.5 + 0.25))
    assert r["jaccard_mean"] == pytest.approx((0.6 + 1.0 + 0.0) / 3)


# ---------------------------------------------------------------------------------------------
# Decision rule
# ---------------------------------------------------------------------------------------------
def test_decision_rule_binary():
    s = torch.tensor([[[0.4, 0.6, 0.5]]])
    assert M.labels_from_scores(s, has_background_class=False).tolist() == [[1, 0, 1]]
    assert M.foreground_from_scores(s, has_background_class=False).tolist() == [[False, True, False]]


def test_decision_rule_k_classes_without_background():
    s = torch.tensor([[[0.2, 0.7, 0.3]], [[0.4, 0.6, 0.8]], [[0.1, 0.1, 0.1]]])  # 3×1×3
    assert M.labels_from_scores(s, has_background_class=False).tolist() == [[3, 0, 1]]
    assert M.foreground_from_scores(s, has_background_class=False).tolist() == [[False, True, True]]


def test_decision_rule_with_background_class():
    s = torch.tensor([[[0.5, 0.1]], [[0.3, 0.2]], [[0.2, 0.7]]])  # background = class 0
    assert M.labels_from_scores(s, has_background_class=True).tolist() == [[0, 2]]
    assert M.foreground_from_scores(s, has_background_class=True).tolist() == [[False, True]]


def test_multilabel_rule():
    s = torch.tensor([[[0.6, 0.5]], [[0.9, 0.2]]])
    assert M.multilabel_from_scores(s).tolist() == [[[True, False]], [[True, False]]]


# ---------------------------------------------------------------------------------------------
# Semantic segmentation vs a numpy reference
# ---------------------------------------------------------------------------------------------
def _numpy_reference(pred, gt, n, ignore):
    conf = np.zeros((n, n), dtype=np.int64)
    for p, g in zip(pred.ravel(), gt.ravel()):
        if g != ignore:
            conf[g, p] += 1
    tp = np.diag(conf).astype(float)
    fp = conf.sum(0) - tp
    fn = conf.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return conf, tp / (tp + fp + fn), 2 * tp / (2 * tp + fp + fn), tp / (tp + fp), tp / (tp + fn)


@pytest.mark.parametrize("has_bg", [False, True])
def test_sem_seg_vs_numpy(has_bg):
    rng = np.random.default_rng(1)
    k = 4
    n_labels = k if has_bg else k + 1
    gt = rng.integers(0, n_labels, size=(23, 17))
    gt[rng.random(gt.shape) < 0.1] = 255
    scores = torch.from_numpy(rng.random((k, 23, 17)).astype(np.float32))
    pred = M.labels_from_scores(scores, has_background_class=has_bg)
    conf = M.confusion_matrix(pred, torch.from_numpy(gt), k + 1, 255)
    ref_conf, iou, dice, prec, rec = _numpy_reference(pred.numpy(), gt, k + 1, 255)
    assert conf.numpy().tolist() == ref_conf.tolist()
    names = ["c0", "c1", "c2", "c3"]
    s = M.sem_seg_summary(conf, LabelSpace(classes=tuple(names), background_is_class=has_bg))
    for i, name in enumerate(names):
        assert s[f"IoU-{name}"] == pytest.approx(iou[i])
        assert s[f"Dice-{name}"] == pytest.approx(dice[i])
        assert s[f"Precision-{name}"] == pytest.approx(prec[i])
        assert s[f"Recall-{name}"] == pytest.approx(rec[i])
    assert s["mIoU"] == pytest.approx(np.nanmean(iou[:k]))
    assert s["pACC"] == pytest.approx(np.trace(ref_conf) / ref_conf.sum())
    freq = ref_conf.sum(1) / ref_conf.sum()
    ok = ~np.isnan(iou)
    assert s["fwIoU"] == pytest.approx((freq[ok] * iou[ok]).sum())
    if has_bg:
        assert s["mIoU_fg"] == pytest.approx(np.nanmean(iou[1:k]))
        assert "IoU-background" not in s
    else:
        assert s["IoU-background"] == pytest.approx(iou[k])


def test_sem_seg_absent_class_is_nan_and_skipped():
    gt = torch.tensor([[0, 0, 2, 2]])
    pred = torch.tensor([[0, 0, 2, 0]])
    s = M.sem_seg_summary(M.confusion_matrix(pred, gt, 3, 255), LabelSpace(classes=("a", "b")))
    assert math.isnan(s["IoU-b"])
    assert s["mIoU"] == pytest.approx(2 / 3)  # only class a


# ---------------------------------------------------------------------------------------------
# ROC-AUC from histograms
# ---------------------------------------------------------------------------------------------
def _mann_whitney(pos, neg):
    pos, neg = np.asarray(pos)[:, None], np.asarray(neg)[None, :]
    return ((pos > neg).sum() + 0.5 * (pos == neg).sum()) / (pos.size * neg.size)


def test_roc_auc_matches_mann_whitney_on_binned_scores():
    rng = np.random.default_rng(0)
    bins = 50
    gt = rng.integers(0, 3, size=(20, 30))  # classes 0, 1 and background 2
    gt[0, :5] = 255
    scores = rng.random((2, 20, 30)).astype(np.float32)
    scores[0] += (gt == 0) * 0.3  # class 0 separable-ish
    scores = np.clip(scores, 0, 1)
    hist = M.score_histograms(torch.from_numpy(scores), torch.from_numpy(gt), 255, bins)
    auc = M.roc_auc_from_histograms(hist)
    binned = np.minimum((scores * bins).astype(np.int64), bins - 1)
    valid = gt != 255
    for c in range(2):
        ref = _mann_whitney(binned[c][valid & (gt == c)], binned[c][valid & (gt != c)])
        assert float(auc[c]) == pytest.approx(ref)
    assert float(auc[0]) > 0.6


def test_roc_auc_nan_without_positives():
    hist = torch.zeros(1, 2, 10, dtype=torch.int64)
    hist[0, 0, 3] = 5
    assert math.isnan(float(M.roc_auc_from_histograms(hist)[0]))
