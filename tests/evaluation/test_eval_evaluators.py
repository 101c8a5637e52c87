"""Pixel evaluators end to end: ground truth read from files at the original resolution."""
import json
import math

import numpy as np
import pytest
import torch

from skinformer.config import get_cfg
from skinformer.data.catalog import DatasetCatalog, MetadataCatalog
from skinformer.evaluation import (ISICTask1Evaluator, ISICTask2Evaluator, SemSegEvaluator, build_evaluator,
                                   metrics as M)

from eval_helpers import rect, scores_from_fg, write_mask


def _task1_case(tmp_path):
    """Three images: Jaccard 0.6 (-> thresholded 0), 0.7, and both empty (-> 1)."""
    h, w = 4, 10
    gt1 = rect(h, w, 0, 1, 0, 10)                    # 10 px
    pr1 = rect(h, w, 0, 1, 0, 6)                     # tp 6, fn 4 -> J 0.6
    gt2 = rect(h, w, 0, 1, 0, 10)
    pr2 = rect(h, w, 0, 1, 0, 7)                     # J 0.7
    gt3 = np.zeros((5, 7), dtype=bool)                # a different size; both empty -> J 1
    pr3 = np.zeros((5, 7), dtype=bool)
    inputs, outputs = [], []
    for i, (g, p) in enumerate([(gt1, pr1), (gt2, pr2), (gt3, pr3)]):
        f = write_mask(tmp_path / f"gt_{i}.png", g)
        inputs.append({"file_name": f"img_{i}.jpg", "image_id": i, "height": g.shape[0], "width": g.shape[1],
                       "sem_seg_file_name": f})
        outputs.append({"sem_seg": scores_from_fg(p)})
    return inputs, outputs


def test_isic_task1_evaluator_known_answer(tmp_path):
    inputs, outputs = _task1_case(tmp_path)
    ev = ISICTask1Evaluator(label_space={"classes": ["lesion"]}, output_dir=str(tmp_path / "out"))
    ev.reset()
    ev.process(inputs[:2], outputs[:2])
    ev.process(inputs[2:], outputs[2:])
    r = ev.evaluate()["isic_task1"]
    assert r["jaccard"] == pytest.approx((0.6 + 0.7 + 1.0) / 3)
    assert r["threshold_jaccard"] == pytest.approx((0.0 + 0.7 + 1.0) / 3)
    assert r["sensitivity"] == pytest.approx((0.6 + 0.7 + 1.0) / 3)
    assert r["pooled_iou"] == pytest.approx(13 / 20)
    assert r["pooled_precision"] == 1.0
    rows = (tmp_path / "out" / "isic_task1_per_image.csv").read_text().strip().splitlines()
    assert len(rows) == 4 and rows[1].startswith("0,6,0,4,30")
    # reset clears the state
    ev.reset()
    assert math.isnan(ev.evaluate()["isic_task1"]["jaccard"])


def test_isic_task1_no_minmax_no_tp_substitution(tmp_path):
    # a uniformly low map must stay background (the original implementation's min-max normalisation would make it
    # foreground) and an empty-GT/empty-prediction image keeps pooled metrics at 0
    g = np.zeros((6, 6), dtype=bool)
    f = write_mask(tmp_path / "gt.png", g)
    scores = torch.full((1, 6, 6), 0.2)
    scores[0, 0, 0] = 0.3
    ev = ISICTask1Evaluator(label_space={"classes": ["lesion"]})
    ev.process([{"file_name": "a", "height": 6, "width": 6, "sem_seg_file_name": f}], [{"sem_seg": scores}])
    r = ev.evaluate()["isic_task1"]
    assert r["jaccard"] == 1.0 and r["pooled_recall"] == 0.0 and r["pooled_precision"] == 0.0


def test_isic_task1_errors_name_the_file(tmp_path):
    f = write_mask(tmp_path / "gt.png", np.zeros((4, 5), dtype=bool))
    ev = ISICTask1Evaluator(label_space={"classes": ["lesion"]})
    with pytest.raises(ValueError, match="gt.png"):
        ev.process([{"file_name": "x.jpg", "sem_seg_file_name": f}], [{"sem_seg": torch.zeros(1, 4, 6)}])
    with pytest.raises(ValueError, match="original resolution"):
        ev.process([{"file_name": "x.jpg", "height": 4, "width": 5, "sem_seg_file_name": f}],
                   [{"sem_seg": torch.zeros(1, 8, 10)}])
    with pytest.raises(KeyError, match="x.jpg"):
        ev.process([{"file_name": "x.jpg", "height": 4, "width": 5}], [{"sem_seg": torch.zeros(1, 4, 5)}])


def test_gt_found_through_dataset_dicts(tmp_path):
    g = rect(4, 4, 0, 2, 0, 2)
    f = write_mask(tmp_path / "gt.png", g)
    ev = ISICTask1Evaluator(label_space={"classes": ["lesion"]}, gt_table={"img.jpg": f})
    ev.process([{"file_name": "img.jpg", "height": 4, "width": 4}], [{"sem_seg": scores_from_fg(g)}])
    assert ev.evaluate()["isic_task1"]["jaccard"] == 1.0


def test_task1_with_background_class_index_masks(tmp_path):
    # 3 classes with background = class 0 (index-encoded), ignore 255 excluded
    gt = np.array([[0, 1, 2, 255]], dtype=np.uint8)
    f = write_mask(tmp_path / "gt.png", gt)
    scores = torch.tensor([[[0.9, 0.1, 0.9, 0.9]], [[0.05, 0.8, 0.05, 0.05]], [[0.05, 0.1, 0.05, 0.05]]])
    ev = ISICTask1Evaluator(label_space={"classes": ["bg", "a", "b"], "has_background_class": True, "mask_encoding": "index"})
    ev.process([{"file_name": "i", "height": 1, "width": 4, "sem_seg_file_name": f}], [{"sem_seg": scores}])
    r = ev.evaluate()["isic_task1"]
    # fg pred = [F, T, F, (ignored)], fg gt = [F, T, T] -> tp 1, fn 1, tn 1
    assert r["jaccard"] == pytest.approx(0.5) and r["pooled_accuracy"] == pytest.approx(2 / 3)


def test_isic_task2_evaluator_normalises_per_image(tmp_path):
    # image A 2×2, image B 4×4; attributes a (overlap case), b (absent everywhere), c (FP in A)
    attrs = ["a", "b", "c"]
    gtA = {"a": np.array([[1, 1], [0, 0]], bool), "b": np.zeros((2, 2), bool), "c": np.zeros((2, 2), bool)}
    prA = {"a": np.array([[1, 0], [1, 0]], bool), "b": np.zeros((2, 2), bool), "c": np.array([[1, 0], [0, 0]], bool)}
    gtB = {"a": rect(4, 4, 0, 2, 0, 4), "b": np.zeros((4, 4), bool), "c": np.zeros((4, 4), bool)}
    prB = dict(gtB)
    inputs, outputs = [], []
    for name, gt, pr in (("A", gtA, prA), ("B", gtB, prB)):
        files = [write_mask(tmp_path / f"{name}_attribute_{a}.png", gt[a]) for a in attrs]
        h, w = gt["a"].shape
        inputs.append({"file_name": f"{name}.jpg", "height": h, "width": w, "label_file_names": files})
        outputs.append({"sem_seg": torch.from_numpy(np.stack([pr[a] for a in attrs]).astype(np.float32) * 0.8)})
    ev = ISICTask2Evaluator(classes=attrs)
    ev.process(inputs, outputs)
    r = ev.evaluate()["isic_task2"]
    assert r["jaccard-a"] == pytest.approx(0.6)
    assert r["jaccard-b"] == 1.0 and r["dice-b"] == 1.0
    assert r["jaccard-c"] == 0.0
    assert r["jaccard_micro"] == pytest.approx(0.5)
    assert r["jaccard_mean"] == pytest.approx(1.6 / 3)


def test_isic_task2_none_file_is_empty_mask(tmp_path):
    f = write_mask(tmp_path / "a.png", rect(3, 3, 0, 1, 0, 3))
    ev = ISICTask2Evaluator(classes=["a", "b"])
    scores = torch.stack([torch.from_numpy(rect(3, 3, 0, 1, 0, 3)).float(), torch.zeros(3, 3)])
    ev.process([{"file_name": "i", "height": 3, "width": 3, "label_file_names": [f, None]}], [{"sem_seg": scores}])
    r = ev.evaluate()["isic_task2"]
    assert r["jaccard-a"] == 1.0 and r["jaccard-b"] == 1.0 and r["jaccard_micro"] == 1.0
    with pytest.raises(ValueError, match="one per attribute"):
        ev.process([{"file_name": "i", "label_file_names": [f]}], [{"sem_seg": scores}])


def _sem_seg_case(tmp_path, roc=False):
    rng = np.random.default_rng(3)
    classes = ["a", "b", "c"]
    inputs, outputs, gts, preds = [], [], [], []
    for i, (h, w) in enumerate([(9, 11), (7, 5), (12, 8)]):
        gt = rng.integers(0, 4, size=(h, w)).astype(np.uint8)  # 3 = background (no class)
        gt[rng.random((h, w)) < 0.1] = 255
        f = write_mask(tmp_path / f"gt{i}.png", gt)
        scores = torch.from_numpy(rng.random((3, h, w)).astype(np.float32))
        inputs.append({"file_name": f"im{i}.jpg", "height": h, "width": w, "sem_seg_file_name": f})
        outputs.append({"sem_seg": scores})
        gts.append(gt)
        preds.append(M.labels_from_scores(scores, False).numpy())
    ev = SemSegEvaluator(label_space={"classes": classes, "mask_encoding": "index"}, roc_auc=roc, roc_auc_bins=64,
                         output_dir=str(tmp_path / "out"))
    return ev, inputs, outputs, gts, preds, classes


def test_sem_seg_evaluator_matches_pooled_numpy(tmp_path):
    ev, inputs, outputs, gts, preds, classes = _sem_seg_case(tmp_path, roc=True)
    ev.process(inputs, outputs)
    r = ev.evaluate()["sem_seg"]
    conf = np.zeros((4, 4), dtype=np.int64)
    for g, p in zip(gts, preds):
        v = g != 255
        np.add.at(conf, (g[v].astype(np.int64), p[v]), 1)
    tp = np.diag(conf)
    iou = tp / (conf.sum(0) + conf.sum(1) - tp)
    for i, c in enumerate(classes):
        assert r[f"IoU-{c}"] == pytest.approx(iou[i])
    assert r["mIoU"] == pytest.approx(iou[:3].mean())
    assert r["IoU-background"] == pytest.approx(iou[3])
    assert 0.3 < r["mAUC"] < 0.7  # random scores
    saved = json.loads((tmp_path / "out" / "sem_seg_evaluation.json").read_text())
    assert saved["confusion_matrix"] == conf.tolist()


def test_build_evaluator_from_metadata(tmp_path):
    name = "_eval_test_binary_ds"
    g = rect(4, 4, 0, 2, 0, 2)
    f = write_mask(tmp_path / "gt.png", g)
    dicts = [{"file_name": "img.jpg", "image_id": 0, "height": 4, "width": 4, "sem_seg_file_name": f}]
    DatasetCatalog.register(name, lambda: dicts)
    MetadataCatalog.get(name).set(classes=["lesion"], ignore_label=255, has_background_class=False,
                                  evaluator_type="isic_task1", mask_encoding="binary")
    try:
        cfg = get_cfg()
        ev = build_evaluator(cfg, name, str(tmp_path))
        assert isinstance(ev, ISICTask1Evaluator)
        ev.reset()
        # test mappers may drop sem_seg_file_name: found through the dataset dicts
        ev.process([{"file_name": "img.jpg", "image_id": 0, "height": 4, "width": 4}], [{"sem_seg": scores_from_fg(g)}])
        assert ev.evaluate()["isic_task1"]["threshold_jaccard"] == 1.0
        MetadataCatalog.remove(name)
        MetadataCatalog.get(name).set(classes=["lesion"], evaluator_type="no_such_type")
        with pytest.raises(KeyError, match="no_such_type"):
            build_evaluator(cfg, name)
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


@pytest.mark.parametrize("etype,meta,cls_name,task", [
    ("sem_seg", dict(classes=["bg", "a"], has_background_class=True, mask_encoding="index"), "SemSegEvaluator", "sem_seg"),
    ("binary", dict(classes=["polyp"]), "ISICTask1Evaluator", "binary"),
    ("isic_task2", dict(classes=["x", "y"]), "ISICTask2Evaluator", "isic_task2"),
    ("coco_instance", dict(classes=["polyp"], thing_dataset_id_to_contiguous_id={1: 0}), "COCOInstanceEvaluator", None),
])
def test_every_registered_type_builds_from_metadata(etype, meta, cls_name, task):
    name = f"_eval_test_{etype}"
    DatasetCatalog.register(name, lambda: [])
    MetadataCatalog.get(name).set(evaluator_type=etype, ignore_label=255, **meta)
    try:
        cfg = get_cfg()
        cfg.TEST.ROC_AUC = True
        ev = build_evaluator(cfg, name)
        assert type(ev).__name__ == cls_name
        ev.reset()
        if task is not None:
            assert list(ev.evaluate()) == [task]  # empty evaluation does not crash
        if etype == "sem_seg":
            assert "mAUC" in ev.evaluate()["sem_seg"] and "mIoU_fg" in ev.evaluate()["sem_seg"]
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
