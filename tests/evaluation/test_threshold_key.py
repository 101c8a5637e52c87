"""TEST.THRESHOLD is the one decision threshold of evaluation, visualisation and tools/predict.py."""
import os

import pytest
import torch

from eval_helpers import rect, write_mask
from skinformer.config import get_cfg
from skinformer.data.catalog import DatasetCatalog, MetadataCatalog
from skinformer.evaluation import build_evaluator
from skinformer.utils.visualizer import Visualizer

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def binary_ds(tmp_path):
    name = "_threshold_key_ds"
    g = rect(4, 4, 0, 2, 0, 4)
    f = write_mask(tmp_path / "gt.png", g)
    DatasetCatalog.register(name, lambda: [{"file_name": "img.jpg", "image_id": 0, "height": 4, "width": 4,
                                            "sem_seg_file_name": f}])
    MetadataCatalog.get(name).set(classes=["lesion"], evaluator_type="isic_task1")
    yield name
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


# foreground rows hold 0.6, background rows 0.4: a 0.5 cut is perfect, a 0.7 cut finds nothing
SCORES = torch.tensor([[[0.6] * 4] * 2 + [[0.4] * 4] * 2])


@pytest.mark.parametrize("threshold,jaccard", [(0.5, 1.0), (0.7, 0.0), (0.3, 0.5)])
def test_evaluator_follows_test_threshold(binary_ds, threshold, jaccard):
    cfg = get_cfg()
    cfg.TEST.THRESHOLD = threshold
    ev = build_evaluator(cfg, binary_ds)
    ev.reset()
    ev.process([{"file_name": "img.jpg", "image_id": 0, "height": 4, "width": 4}], [{"sem_seg": SCORES}])
    assert ev.evaluate()["isic_task1"]["jaccard"] == pytest.approx(jaccard)


def test_visualiser_and_predict_follow_the_threshold(binary_ds):
    meta = MetadataCatalog.get(binary_ds)
    low, high = Visualizer(meta, threshold=0.3), Visualizer(meta, threshold=0.7)
    assert low.prediction_masks({"sem_seg": SCORES}, (4, 4))[0].sum() == 16
    assert high.prediction_masks({"sem_seg": SCORES}, (4, 4))[0].sum() == 0
    from skinformer.cli import predict
    masks = predict.prediction_to_masks({"sem_seg": SCORES}, meta, multi_label=False, threshold=0.3)
    assert (masks[""] == 255).all()
    masks = predict.prediction_to_masks({"sem_seg": SCORES}, meta, multi_label=False)
    assert (masks[""][:2] == 255).all() and (masks[""][2:] == 0).all()
