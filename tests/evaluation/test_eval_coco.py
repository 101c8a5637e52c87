"""COCO instance evaluator on cases with known AP."""
import json
import math

import numpy as np
import pytest
import torch

from skinformer.evaluation import COCOInstanceEvaluator
from skinformer.evaluation.coco_evaluation import convert_to_coco_dict
from skinformer.structures import Boxes, Instances

from eval_helpers import rect

H, W = 60, 80
# (y0, y1, x0, x1) boxes; all "medium"/"small" sized, 2 objects in image 0, 1 in image 1
OBJECTS = {0: [(5, 25, 5, 35), (30, 55, 40, 75)], 1: [(10, 40, 10, 50)]}


def _poly(y0, y1, x0, x1):
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def _dataset_dicts():
    dicts = []
    for img_id, objs in OBJECTS.items():
        anns = [{"bbox": [x0, y0, x1 - x0, y1 - y0], "bbox_mode": 1, "category_id": 0, "segmentation": _poly(y0, y1, x0, x1),
                 "iscrowd": 0} for (y0, y1, x0, x1) in objs]
        dicts.append({"file_name": f"/data/img{img_id}.jpg", "image_id": img_id + 10, "height": H, "width": W,
                      "annotations": anns})
    return dicts


def _instances(objs, scores=None):
    inst = Instances((H, W))
    n = len(objs)
    masks = torch.from_numpy(np.stack([rect(H, W, *o) for o in objs])) if n else torch.zeros(0, H, W, dtype=torch.bool)
    inst.pred_masks = masks
    inst.pred_boxes = Boxes(torch.tensor([[x0, y0, x1, y1] for (y0, y1, x0, x1) in objs], dtype=torch.float32).reshape(-1, 4))
    inst.scores = torch.tensor(scores if scores is not None else [1.0] * n, dtype=torch.float32)
    inst.pred_classes = torch.zeros(n, dtype=torch.int64)
    return inst


def _run(ev, per_image_objs):
    ev.reset()
    for d in _dataset_dicts():
        objs = per_image_objs[d["image_id"] - 10]
        inp = {k: d[k] for k in ("file_name", "image_id", "height", "width")}
        ev.process([inp], [{"instances": _instances(objs)}])
    return ev.evaluate()


def test_perfect_predictions_ap_100():
    ev = COCOInstanceEvaluator(classes=["polyp"], dataset_dicts=_dataset_dicts())
    r = _run(ev, OBJECTS)
    for task in ("segm", "bbox"):
        assert r[task]["AP"] == pytest.approx(100.0)
        assert r[task]["AP50"] == pytest.approx(100.0)
        assert r[task]["AP75"] == pytest.approx(100.0)
        assert r[task]["AP-polyp"] == pytest.approx(100.0)
        assert math.isnan(r[task]["APl"])  # no large objects in the ground truth


def test_missing_detection_known_ap():
    ev = COCOInstanceEvaluator(classes=["polyp"], dataset_dicts=_dataset_dicts())
    # image 0 loses one of its two objects: recall 2/3 at precision 1
    r = _run(ev, {0: OBJECTS[0][:1], 1: OBJECTS[1]})
    # 101-point interpolation: recall thresholds 0..0.66 (67 points) have precision 1
    assert r["segm"]["AP"] == pytest.approx(67 / 101 * 100)
    assert r["bbox"]["AP50"] == pytest.approx(67 / 101 * 100)


def test_no_predictions_gives_zero_ap():
    ev = COCOInstanceEvaluator(classes=["polyp"], dataset_dicts=_dataset_dicts())
    r = _run(ev, {0: [], 1: []})
    assert r["segm"]["AP"] == 0.0 and r["bbox"]["AP"] == 0.0
    assert math.isnan(r["segm"]["APl"])


def test_json_file_ground_truth_only_evaluated_images_count(tmp_path):
    # json ground truth with category id 7 and an extra image that is not evaluated
    coco = convert_to_coco_dict(_dataset_dicts(), ["polyp"], {0: 7})
    coco["images"].append({"id": 99, "height": H, "width": W, "file_name": "unused.jpg"})
    coco["annotations"].append(dict(coco["annotations"][0], id=100, image_id=99))
    f = tmp_path / "gt.json"
    f.write_text(json.dumps(coco))
    ev = COCOInstanceEvaluator(classes=["polyp"], json_file=str(f), thing_dataset_id_to_contiguous_id={7: 0},
                               output_dir=str(tmp_path / "out"))
    r = _run(ev, OBJECTS)
    assert r["segm"]["AP"] == pytest.approx(100.0)
    assert (tmp_path / "out" / "coco_instances_results.json").exists()
    # matched by file name when the dataset dicts' image ids are not the json's
    ev.reset()
    ev.process([{"file_name": "/elsewhere/img1.jpg", "image_id": "img1", "height": H, "width": W}],
               [{"instances": _instances(OBJECTS[1])}])
    assert ev.evaluate()["bbox"]["AP"] == pytest.approx(100.0)
    ev.reset()
    ev.process([{"file_name": "nope.jpg", "image_id": "nope", "height": H, "width": W}],
               [{"instances": _instances(OBJECTS[1])}])
    with pytest.raises(KeyError, match="nope"):
        ev.evaluate()


def test_rle_and_xyxy_ground_truth_conversion():
    from pycocotools import mask as mask_util

    m = rect(H, W, 5, 25, 5, 35)
    rle = mask_util.encode(np.asfortranarray(m.astype(np.uint8)))
    d = [{"file_name": "a.jpg", "image_id": "a", "height": H, "width": W,
          "annotations": [{"bbox": [5, 5, 35, 25], "bbox_mode": 0, "category_id": 0, "segmentation": rle}]}]
    coco = convert_to_coco_dict(d, ["polyp"])
    ann = coco["annotations"][0]
    assert ann["bbox"] == [5, 5, 30, 20] and ann["area"] == 600 and ann["category_id"] == 1
    assert coco["images"][0]["id"] == 1 and ann["id"] == 1
    json.dumps(coco)  # serialisable


def test_prediction_size_must_be_original():
    ev = COCOInstanceEvaluator(classes=["polyp"], dataset_dicts=_dataset_dicts())
    with pytest.raises(ValueError, match="original resolution"):
        ev.process([{"file_name": "x", "image_id": 10, "height": H + 1, "width": W}], [{"instances": _instances([])}])
