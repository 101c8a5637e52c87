"""Per-image metrics: hand-computed known answers for every formula and empty-image convention,
and the PerImageEvaluator on binary, multi-class (label map) and multi-label fixtures."""
import math

import numpy as np
import pytest
import torch

from skinformer.config import get_cfg
from skinformer.data.catalog import DatasetCatalog, MetadataCatalog
from skinformer.evaluation import DatasetEvaluators, PerImageEvaluator, build_evaluator
from skinformer.evaluation.per_image_metrics import (
    boundary_iou, confusion_summary, foreground_background_iou, hd95, per_image_roc_auc, per_image_scores,
)

from eval_helpers import rect, scores_from_fg, write_mask


def test_per_image_scores_known_answer_and_empty_conventions():
    # class 0: tp 6, fp 2, fn 4, tn 88; class 1: empty in both
    counts = torch.tensor([[6, 2, 4, 88], [0, 0, 0, 100]])
    s = per_image_scores(counts, "one")
    assert s["jaccard"][0].item() == pytest.approx(6 / 12)
    assert s["dice"][0].item() == pytest.approx(12 / 18)
    assert s["recall"][0].item() == pytest.approx(0.6) and s["precision"][0].item() == pytest.approx(0.75)
    assert s["f1"][0].item() == pytest.approx(2 * 0.6 * 0.75 / 1.35)
    assert s["f2"][0].item() == pytest.approx(5 * 0.6 * 0.75 / (4 * 0.75 + 0.6))
    assert s["specificity"][0].item() == pytest.approx(88 / 90) and s["accuracy"][0].item() == pytest.approx(0.94)
    assert s["smoothed_jaccard"][0].item() == pytest.approx(6 / 13)
    assert s["jaccard"][1].item() == 1.0 and s["specificity"][1].item() == 1.0
    assert math.isnan(per_image_scores(counts, "skip")["dice"][1].item())
    assert per_image_scores(counts, "zero")["dice"][1].item() == 0.0
    assert math.isnan(s["smoothed_jaccard"][1].item())
    with pytest.raises(ValueError, match="convention"):
        per_image_scores(counts, "nan")


def test_roc_auc_matches_mann_whitney_by_hand():
    scores = torch.tensor([[[0.1, 0.4], [0.35, 0.8]], [[0.5, 0.5], [0.5, 0.5]]])
    gt = torch.tensor([[[False, False], [True, True]], [[True, True], [True, True]]])
    auc = per_image_roc_auc(scores, gt)
    # positives 0.35, 0.8 vs negatives 0.1, 0.4: pairs won 1+1+0+1 = 3 of 4
    assert auc[0].item() == pytest.approx(0.75)
    assert math.isnan(auc[1].item())  # class never absent: undefined, skipped


def test_boundary_iou_and_hd95_known_answers():
    a = torch.from_numpy(rect(40, 40, 10, 30, 10, 30))
    assert boundary_iou(a, a) == 1.0 and hd95(a, a) == 0.0
    b = torch.from_numpy(rect(40, 40, 10, 30, 13, 33))  # shifted 3 px right
    assert hd95(a, b) == pytest.approx(3.0)
    assert 0.0 < boundary_iou(a, b) < 1.0
    empty = torch.zeros(40, 40, dtype=torch.bool)
    assert boundary_iou(empty, empty) == 1.0 and boundary_iou(a, empty) == 0.0
    assert math.isnan(hd95(a, empty)) and hd95(empty, empty) == 0.0


def test_fg_bg_iou_and_confusion_summary():
    r = foreground_background_iou(torch.tensor([6, 2, 4, 88]))
    assert r["iou_fg"] == pytest.approx(0.5) and r["iou_bg"] == pytest.approx(88 / 94)
    assert r["iou_mean"] == pytest.approx((0.5 + 88 / 94) / 2)
    conf = torch.tensor([[88.0, 2.0], [4.0, 6.0]])  # rows gt (bg, fg), cols pred
    s = confusion_summary(conf)
    assert s["pACC"] == pytest.approx(0.94)
    assert s["mACC"] == pytest.approx((88 / 90 + 6 / 10) / 2)
    assert s["mIoU"] == pytest.approx((88 / 94 + 0.5) / 2)
    assert s["fwIoU"] == pytest.approx(0.9 * 88 / 94 + 0.1 * 0.5)


def test_binary_evaluator_means_over_images(tmp_path):
    gt1, gt2 = rect(10, 10, 0, 5, 0, 5), np.zeros((10, 10), bool)
    files = [write_mask(tmp_path / "g1.png", gt1), write_mask(tmp_path / "g2.png", gt2)]
    ev = PerImageEvaluator(label_space={"classes": ["lesion"]}, empty="one", roc_auc=True, output_dir=str(tmp_path / "o"))
    pred1 = rect(10, 10, 0, 5, 0, 4)  # 20 of 25, no fp: jaccard 0.8
    ev.process([{"file_name": "a", "sem_seg_file_name": files[0]}], [{"sem_seg": scores_from_fg(pred1)}])
    ev.process([{"file_name": "b", "sem_seg_file_name": files[1]}], [{"sem_seg": scores_from_fg(gt2)}])
    r = ev.evaluate()["per_image"]
    assert r["jaccard"] == pytest.approx((0.8 + 1.0) / 2)  # empty image counts 1 ("one")
    assert r["dice-lesion"] == pytest.approx((40 / 45 + 1.0) / 2)
    # image 1: 20 positives above all 75 negatives, 5 tied with them -> (20*75 + 5*75/2) / (25*75);
    # image 2 has no lesion: skipped
    assert r["auc"] == pytest.approx(0.9)
    assert r["pACC"] == pytest.approx(195 / 200) and "hd95" in r and "boundary_iou" in r
    lines = (tmp_path / "o" / "per_image_metrics.csv").read_text().splitlines()
    assert len(lines) == 3 and lines[0].startswith("file_name,class,jaccard")
    ev2 = PerImageEvaluator(label_space={"classes": ["lesion"]}, empty="skip")
    ev2.process([{"file_name": "a", "sem_seg_file_name": files[0]}], [{"sem_seg": scores_from_fg(pred1)}])
    ev2.process([{"file_name": "b", "sem_seg_file_name": files[1]}], [{"sem_seg": scores_from_fg(gt2)}])
    assert ev2.evaluate()["per_image"]["jaccard"] == pytest.approx(0.8)  # the empty image is skipped


def test_multiclass_label_map_and_ignore(tmp_path):
    lab = np.zeros((6, 6), np.uint8)
    lab[:, 3:] = 1
    lab[0, 0] = 255  # ignored
    f = write_mask(tmp_path / "l.png", lab)
    ev = PerImageEvaluator(label_space={"classes": ["bg", "a"], "has_background_class": True, "mask_encoding": "index"})
    scores = torch.zeros(2, 6, 6)
    scores[0] = 1.0
    scores[0, :, 3:5] = 0.0
    scores[1, :, 3:5] = 1.0  # class a predicted on columns 3-4 only (12 of its 18 px)
    ev.process([{"file_name": "x", "sem_seg_file_name": f}], [{"sem_seg": scores}])
    r = ev.evaluate()["per_image"]
    assert r["jaccard-a"] == pytest.approx(12 / 18)
    assert r["jaccard-bg"] == pytest.approx(17 / 23)  # 17 valid bg px + 6 missed a-pixels predicted bg
    assert r["specificity-a"] == pytest.approx(1.0)


def test_multilabel_and_config_hook(tmp_path):
    m0, m1 = rect(8, 8, 0, 4, 0, 4), rect(8, 8, 2, 6, 2, 6)  # overlapping attributes
    files = [write_mask(tmp_path / "m0.png", m0), write_mask(tmp_path / "m1.png", m1)]
    DatasetCatalog.register("pi_ml_test", lambda: [{"file_name": "z", "label_file_names": files}])
    MetadataCatalog.get("pi_ml_test").set(classes=["p", "q"], evaluator_type="isic_task2", mapper="MultiLabelMapper")
    cfg = get_cfg()
    cfg.TEST.PER_IMAGE.ENABLED = True
    ev = build_evaluator(cfg, "pi_ml_test")
    assert isinstance(ev, DatasetEvaluators)
    scores = torch.from_numpy(np.stack([m0, m0]).astype(np.float32))  # attribute q predicted as p's square
    ev.reset()
    ev.process([{"file_name": "z", "label_file_names": files}], [{"sem_seg": scores}])
    r = ev.evaluate()
    assert r["per_image"]["jaccard-p"] == pytest.approx(1.0)
    assert r["per_image"]["jaccard-q"] == pytest.approx(4 / 28)
    assert "isic_task2" in r
