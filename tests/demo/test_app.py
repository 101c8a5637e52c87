import os

import numpy as np
import pytest
import torch
from PIL import Image

from skinformer.config import get_cfg
from skinformer.data.catalog import DatasetCatalog
from skinformer.demo import compare_metrics, encode_mask, parse_colors, render
from skinformer.engine import DefaultPredictor
from skinformer.modeling.meta_arch.build import build_model
from skinformer.structures.label_space import LabelSpace

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CONFIG = os.path.join(REPO, "configs", "quickstart", "per_pixel_r18_synthetic.yaml")


def _weights(tmp_path, seed):
    cfg = get_cfg()
    cfg.merge_from_file(CONFIG)
    torch.manual_seed(seed)
    path = str(tmp_path / f"w{seed}.pth")
    torch.save({"model": build_model(cfg).state_dict()}, path)
    cfg.MODEL.WEIGHTS = path
    return path, DefaultPredictor(cfg)


def test_render_styles_and_colours():
    image = np.full((20, 30, 3), 100, np.uint8)
    masks = np.zeros((1, 20, 30), bool)
    masks[0, 5:15, 5:20] = True
    filled = render(image, masks, [(0, 255, 0)], opacity=1.0, style="fill")
    assert (filled[masks[0]] == (0, 255, 0)).all() and (filled[~masks[0]] == 100).all()
    contour = render(image, masks, [(0, 255, 0)], opacity=1.0, style="contour", thickness=1)
    assert (contour[10, 10] == 100).all() and (contour[5, 10] == (0, 255, 0)).all()
    with pytest.raises(ValueError, match="style must be one of"):
        render(image, masks, [(0, 255, 0)], style="glow")
    assert parse_colors("#00ff00", [(1, 2, 3), (4, 5, 6)]) == [(0, 255, 0), (4, 5, 6)]
    with pytest.raises(ValueError, match="not a hex colour"):
        parse_colors("green", [(1, 2, 3)])
    assert set(np.unique(encode_mask(masks, LabelSpace(classes=("lesion",))))) == {0, 255}
    two = np.stack([masks[0], ~masks[0]])
    assert set(np.unique(encode_mask(two, LabelSpace(classes=("a", "b"))))) == {0, 1}
    # background is class 1 here: pixels of no mask take its index
    assert encode_mask(np.zeros((2, 1, 1), bool), LabelSpace(classes=("a", "bg"), background_is_class=True,
                                                                background_index=1)).item() == 1
    with pytest.raises(ValueError, match="2 masks for the 1 classes"):
        encode_mask(two, LabelSpace(classes=("lesion",)))


def test_compare_metrics_ignores_ignored_pixels():
    pred = np.zeros((1, 4, 4), bool)
    pred[0, :2] = True  # 8 px
    gt = np.full((4, 4), 1, np.int64)  # background = K = 1
    gt[0] = 0
    gt[1, :2] = 0
    gt[3] = 255  # ignored
    (_, p, r, d), = compare_metrics(pred, gt, ["lesion"])
    assert p == pytest.approx(6 / 8) and r == pytest.approx(1.0) and d == pytest.approx(12 / 14)


@pytest.mark.slow
def test_demo_app_over_http(gradio_app, tmp_path):
    from gradio_client import handle_file

    w_a, pred_a = _weights(tmp_path, 0)
    w_b, pred_b = _weights(tmp_path, 1)
    record = DatasetCatalog.get("synthetic_lesion_val")[0]
    image = np.asarray(Image.open(record["file_name"]).convert("RGB"))
    scores_a = pred_a(image)["sem_seg"][0].numpy()
    # random weights: a threshold at the median makes the mask non-trivial
    threshold = round(float(np.median(scores_a)), 3)
    expected = scores_a > threshold
    assert 0.05 < expected.mean() < 0.95

    client = gradio_app(["demo/app.py", "--config-file", CONFIG, "--compare-config", CONFIG,
                         "--compare-weights", w_b, "--num-examples", "2", "MODEL.WEIGHTS", w_a])
    api = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {"/segment", "/compare", "/load_model"} <= set(api)
    model_a = f"per_pixel_r18_synthetic ({os.path.basename(w_a)})"

    gallery, areas, masks = client.predict(model_a, [handle_file(record["file_name"])], threshold, 1.0, "fill",
                                           "#00ff00", api_name="/segment")
    mask = np.asarray(Image.open(masks[0]))
    assert mask.shape == image.shape[:2] and set(np.unique(mask)) <= {0, 255}
    # bilinear resizing in float may flip a pixel sitting exactly on the threshold
    assert ((mask == 255) == expected).mean() > 0.999
    overlay = np.asarray(Image.open(gallery[0]["image"]).convert("RGB"))
    fg = mask == 255
    assert (overlay[fg] == (0, 255, 0)).all() and (overlay[~fg] == image[~fg]).all()
    assert areas["data"][0][1] == "lesion" and areas["data"][0][2] == int(fg.sum())

    panels, metrics = client.predict(handle_file(record["file_name"]), handle_file(record["sem_seg_file_name"]),
                                     model_a, f"per_pixel_r18_synthetic ({os.path.basename(w_b)})",
                                     threshold, 0.5, "contour", api_name="/compare")
    assert len(panels) == 4
    assert (np.asarray(Image.open(panels[0]["image"]).convert("RGB")) == image).all()
    gt = np.asarray(Image.open(record["sem_seg_file_name"]).convert("L")) >= 128
    tp, fp, fn = (fg & gt).sum(), (fg & ~gt).sum(), (~fg & gt).sum()
    row_a = metrics["data"][0]
    assert row_a[0].startswith("A: ") and row_a[1] == "lesion"
    assert row_a[2] == pytest.approx(tp / (tp + fp), abs=2e-3)
    assert row_a[3] == pytest.approx(tp / (tp + fn), abs=2e-3)
    assert row_a[4] == pytest.approx(2 * tp / (2 * tp + fp + fn), abs=2e-3)
    assert metrics["data"][1][0].startswith("B: ")
