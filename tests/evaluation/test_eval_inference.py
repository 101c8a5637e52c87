"""inference_on_dataset, DatasetEvaluators and the results helpers."""
import logging

import pytest
import torch
from torch import nn

from skinformer.config import get_cfg
from skinformer.evaluation import (DatasetEvaluator, DatasetEvaluators, ISICTask1Evaluator, flatten_results_dict,
                                   inference_context, inference_on_dataset, print_csv_format, verify_results)

from eval_helpers import rect, write_mask


class ThresholdModel(nn.Module):
    """Predicts the foreground stored in the input dict; records train mode / grad state."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(1))
        self.seen = []

    def forward(self, batch):
        self.seen.append((self.training, torch.is_grad_enabled()))
        return [{"sem_seg": d["fg"].float()[None] * 0.9 * self.w} for d in batch]


class CountingEvaluator(DatasetEvaluator):
    def reset(self):
        self.n = 0

    def process(self, inputs, outputs):
        self.n += len(inputs)

    def evaluate(self):
        return {"count": {"images": float(self.n)}}


def _loader(tmp_path, n=8, batch=2):
    batches = []
    for b in range(n // batch):
        items = []
        for j in range(batch):
            i = b * batch + j
            g = rect(6, 8, 0, 3, 0, 2 + i % 5)
            f = write_mask(tmp_path / f"gt{i}.png", g)
            items.append({"file_name": f"im{i}.jpg", "image_id": i, "height": 6, "width": 8,
                          "sem_seg_file_name": f, "fg": torch.from_numpy(g)})
        batches.append(items)
    return batches


def test_inference_on_dataset_results_and_timing(tmp_path, caplog):
    model = ThresholdModel()
    model.train()
    timings = {}
    with caplog.at_level(logging.INFO, logger="skinformer"):
        res = inference_on_dataset(model, _loader(tmp_path), [ISICTask1Evaluator(label_space={"classes": ["lesion"]}), CountingEvaluator()],
                                   num_warmup=2, timings=timings, log_period_s=0.0)
    assert res["isic_task1"]["threshold_jaccard"] == 1.0
    assert res["count"]["images"] == 8.0
    assert model.training  # restored
    assert all(not tr and not grad for tr, grad in model.seen)  # eval mode, no grad inside
    assert timings["num_images"] == 8 and timings["num_timed_images"] == 4  # 2 warm-up batches of 2 excluded
    for k in ("data_s", "model_s", "evaluator_s", "evaluate_s", "total_s", "model_s_per_image",
              "evaluator_s_per_image", "data_s_per_image"):
        assert timings[k] >= 0.0
    assert timings["total_s"] >= timings["model_s"]
    text = caplog.text
    assert "Time split per image" in text and "Inference done" in text


def test_inference_on_dataset_short_loader_and_no_evaluator(tmp_path):
    timings = {}
    res = inference_on_dataset(ThresholdModel(), _loader(tmp_path, n=2, batch=2), None, timings=timings)
    assert res == {} and timings["num_images"] == 2 and timings["num_timed_images"] == 2
    timings = {}
    res = inference_on_dataset(ThresholdModel(), iter(_loader(tmp_path, n=2, batch=1)), CountingEvaluator(), timings=timings)
    assert res["count"]["images"] == 2.0 and timings["num_timed_images"] == 2  # no len(): warm-up never reached


def test_inference_context_restores_on_error():
    m = ThresholdModel()
    m.train()
    with pytest.raises(RuntimeError):
        with inference_context(m):
            assert not m.training
            raise RuntimeError("boom")
    assert m.training


def test_dataset_evaluators_duplicate_task():
    with pytest.raises(KeyError, match="count"):
        ev = DatasetEvaluators([CountingEvaluator(), CountingEvaluator()])
        ev.reset()
        ev.evaluate()


def test_results_helpers(caplog):
    res = {"sem_seg": {"mIoU": 0.5, "pACC": 0.9}, "segm": {"AP": 40.0}}
    assert flatten_results_dict(res) == {"sem_seg/mIoU": 0.5, "sem_seg/pACC": 0.9, "segm/AP": 40.0}
    with caplog.at_level(logging.INFO, logger="skinformer"):
        print_csv_format(res)
    assert "copypaste: mIoU,pACC" in caplog.text and "0.5000,0.9000" in caplog.text
    cfg = get_cfg()
    assert verify_results(cfg, res)
    cfg.TEST.EXPECTED_RESULTS = [["sem_seg", "mIoU", 0.5, 0.01], ["segm", "AP", 40.5, 1.0]]
    assert verify_results(cfg, res)
    cfg.TEST.EXPECTED_RESULTS = [["sem_seg", "mIoU", 0.6, 0.01]]
    assert not verify_results(cfg, res)
    cfg.TEST.EXPECTED_RESULTS = [["bbox", "AP", 1.0, 1.0]]
    assert not verify_results(cfg, res)
    cfg.TEST.EXPECTED_RESULTS = [["sem_seg", "mIoU", float("nan"), 1.0]]
    assert not verify_results(cfg, {"sem_seg": {"mIoU": float("nan")}})
