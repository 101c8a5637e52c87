"""evaluation.visualization.write_overlays: the ground-truth outline and the prediction fill
land where they should, at most ``num_images`` pictures, the model's mode is restored."""
import os

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from skinformer.data.catalog import DatasetCatalog, MetadataCatalog
from skinformer.evaluation.visualization import write_overlays

from eval_helpers import rect, write_mask

H, W = 40, 48
PALETTE = (220, 20, 60)


class _ConstantModel(nn.Module):
    """Predicts ``fg`` (bool H×W) for every image: scores 0.9 inside, 0.1 outside."""

    def __init__(self, fg):
        super().__init__()
        self.fg = torch.from_numpy(fg)
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, batch):
        assert not self.training
        return [{"sem_seg": torch.where(self.fg, 0.9, 0.1)[None].float()} for _ in batch]


@pytest.fixture()
def lesion_dataset(tmp_path):
    name = f"_vis_{os.path.basename(str(tmp_path))}"
    gt = rect(H, W, 10, 30, 12, 36)
    dicts = []
    for i in range(3):
        img = str(tmp_path / f"img{i}.png")
        Image.fromarray(np.full((H, W, 3), 128, np.uint8)).save(img)
        dicts.append({"file_name": img, "image_id": i, "height": H, "width": W,
                      "sem_seg_file_name": write_mask(tmp_path / f"mask{i}.png", gt)})
    DatasetCatalog.register(name, lambda: dicts)
    MetadataCatalog.get(name).set(classes=["lesion"], ignore_label=255, has_background_class=False,
                                  mask_encoding="binary", palette=[list(PALETTE)])
    yield name, dicts, gt
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def _read_rgb(path):
    return cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)


def test_ground_truth_outline_and_prediction_fill(tmp_path, lesion_dataset):
    name, dicts, gt = lesion_dataset
    model = _ConstantModel(np.zeros((H, W), bool))  # nothing predicted: only the outline is drawn
    model.train()
    loader = [[{"file_name": d["file_name"], "height": H, "width": W}] for d in dicts]
    paths = write_overlays(model, loader, name, str(tmp_path / "vis"), 2, threshold=0.5)
    assert [os.path.basename(p) for p in paths] == ["img0.png", "img1.png"]
    assert model.training  # restored
    out = _read_rgb(paths[0])
    changed = (out != 128).any(axis=2)
    # the outline is the complementary colour, on the lesion's border and nowhere else
    k = np.ones((3, 3), np.uint8)
    band = cv2.dilate(gt.astype(np.uint8), k, iterations=2).astype(bool) & ~cv2.erode(
        gt.astype(np.uint8), k, iterations=2).astype(bool)
    assert changed.any() and not (changed & ~band).any()
    assert {tuple(p) for p in out[changed]} == {tuple(255 - c for c in PALETTE)}
    # the lesion's corner pixel is on the outline
    assert changed[10, 12] and changed[29, 35]


def test_prediction_fill_is_blended_with_the_class_colour(tmp_path, lesion_dataset):
    name, dicts, _ = lesion_dataset
    fg = rect(H, W, 0, 5, 0, 5)  # away from the ground-truth outline
    loader = [[{"file_name": dicts[0]["file_name"], "height": H, "width": W}]]
    (path,) = write_overlays(_ConstantModel(fg), loader, name, str(tmp_path / "vis"), 5, threshold=0.5)
    out = _read_rgb(path).astype(int)
    expected = np.rint((128 + np.array(PALETTE)) / 2)
    assert np.abs(out[fg] - expected).max() <= 1
    assert (out[20:22, 0:5] == 128).all()
