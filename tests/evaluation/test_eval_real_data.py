"""Evaluators on the real data in ../shared/data (skipped when it is absent)."""
import contextlib
import io
import os

import numpy as np
import pytest
import torch

from skinformer.evaluation import COCOInstanceEvaluator, ISICTask1Evaluator
from skinformer.structures import BitMasks, Instances

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.join(_ROOT, "..", "shared", "data")
KVASIR = os.path.join(DATA, "kvasir_seg")
FULLRES = os.path.join(DATA, "isic2017_fullres")


@pytest.mark.skipif(not os.path.isdir(KVASIR), reason="Kvasir-SEG not available")
def test_kvasir_ground_truth_as_prediction_scores_100():
    from pycocotools.coco import COCO

    json_file = os.path.join(KVASIR, "annotations", "instances_derived_from_masks.json")
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(json_file)
    with open(os.path.join(KVASIR, "splits", "test.txt")) as f:
        names = [line.strip() for line in f if line.strip()][:4]
    by_name = {img["file_name"]: img for img in coco.dataset["images"]}
    ev = COCOInstanceEvaluator(classes=["polyp"], json_file=json_file, thing_dataset_id_to_contiguous_id={1: 0})
    ev.reset()
    for name in names:
        img = by_name[name]
        anns = coco.loadAnns(coco.getAnnIds(imgIds=img["id"]))
        masks = torch.from_numpy(np.stack([coco.annToMask(a).astype(bool) for a in anns]))
        inst = Instances((img["height"], img["width"]))
        inst.pred_masks = masks
        inst.pred_boxes = BitMasks(masks).get_bounding_boxes()
        inst.scores = torch.ones(len(anns))
        inst.pred_classes = torch.zeros(len(anns), dtype=torch.int64)
        # the dataset dict's image_id need not be the json id: matched by file name
        ev.process([{"file_name": os.path.join("/somewhere", name), "image_id": name, "height": img["height"],
                     "width": img["width"]}], [{"instances": inst}])
    r = ev.evaluate()
    assert r["segm"]["AP"] == pytest.approx(100.0)
    assert r["bbox"]["AP50"] == pytest.approx(100.0)


@pytest.mark.skipif(not os.path.isdir(FULLRES), reason="ISIC 2017 full-resolution images not available")
def test_isic_fullres_masks_task1_and_tool(tmp_path):
    from skinformer.data import mask_io

    masks = sorted(os.listdir(os.path.join(FULLRES, "masks")))[:2]
    ev = ISICTask1Evaluator(label_space={"classes": ["lesion"]})
    pred_dir = tmp_path / "pred"
    gt_dir = tmp_path / "gt"
    pred_dir.mkdir()
    gt_dir.mkdir()
    for m in masks:
        f = os.path.join(FULLRES, "masks", m)
        fg = mask_io.decode_binary(mask_io.read_mask_array(f), f)
        h, w = fg.shape
        ev.process([{"file_name": m, "height": h, "width": w, "sem_seg_file_name": f}],
                   [{"sem_seg": torch.from_numpy(fg).float()[None]}])
        os.symlink(f, gt_dir / m)
        os.symlink(f, pred_dir / m.replace("_segmentation", ""))
    r = ev.evaluate()["isic_task1"]
    assert r["threshold_jaccard"] == 1.0 and r["pooled_iou"] == 1.0

    from skinformer.cli import evaluate as tool

    rep = tool.run(tool.build_parser().parse_args(["--gt-dir", str(gt_dir), "--pred-dir", str(pred_dir),
                                                   "--metric", "isic_task1"]))
    assert rep["num_images"] == 2 and rep["results"]["threshold_jaccard"] == 1.0
