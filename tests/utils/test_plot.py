import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from skinformer.utils import plot

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _tool():
    from skinformer.cli import plot as plot_cli

    return plot_cli


def _png_ok(path):
    assert os.path.isfile(path) and os.path.getsize(path) > 1000
    img = np.asarray(Image.open(path).convert("RGB"))
    assert img.ndim == 3 and img.std() > 1  # something was drawn, not a blank canvas
    return img


def test_curves_train_and_val_on_one_axis(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    with open(run / "metrics.json", "w") as f:
        for i in range(0, 100, 10):
            rec = {"iteration": i, "total_loss": 2.0 / (1 + i), "lr": 1e-3}
            if i % 50 == 40:
                rec["isic_task1/dice"] = 0.5 + i / 300
            f.write(json.dumps(rec) + "\n")
    (run / "log.txt").write_text("[x] Contents of args.config_file=configs/quickstart/my_cfg.yaml:\nMODEL: {}\n")
    out = _tool().main(["curves", str(run), "--out", str(tmp_path / "c.png")])
    _png_ok(out)
    assert plot.run_config_name(str(run)) == "my_cfg"
    with pytest.raises(SystemExit, match="not in"):
        _tool().main(["curves", str(run), "--val-keys", "sem_seg/mIoU", "--out", str(tmp_path / "x.png")])


def test_class_distribution_counts_and_plots(tmp_path):
    from skinformer.data.catalog import DatasetCatalog
    from skinformer.data.mask_io import decode_binary, read_mask_array

    stats = plot.class_distribution("synthetic_lesion_val")
    records = DatasetCatalog.get("synthetic_lesion_val")
    fg = [decode_binary(read_mask_array(r["sem_seg_file_name"])) for r in records]
    assert stats["classes"] == ["lesion"]
    assert stats["pixels"][0] == sum(int(m.sum()) for m in fg)
    assert stats["images"][0] == sum(bool(m.any()) for m in fg)
    assert stats["total_pixels"] == sum(m.size for m in fg)
    for kind in ("bar", "pie"):
        _png_ok(_tool().main(["classes", "synthetic_lesion_train", "synthetic_lesion_val", "--kind", kind,
                              "--out", str(tmp_path / f"{kind}.png")]))


def test_dataset_statistics(tmp_path):
    _png_ok(_tool().main(["stats", "synthetic_lesion_train", "synthetic_lesion_val", "--out", str(tmp_path / "s.png")]))


@pytest.mark.slow
def test_prediction_grid(tmp_path):
    from skinformer.config import get_cfg
    from skinformer.modeling.meta_arch.build import build_model

    config = os.path.join(REPO, "configs", "quickstart", "per_pixel_r18_synthetic.yaml")
    cfg = get_cfg()
    cfg.merge_from_file(config)
    torch.manual_seed(0)
    weights = str(tmp_path / "w.pth")
    torch.save({"model": build_model(cfg).state_dict()}, weights)
    out = _tool().main(["predictions", "--config-file", config, "--indices", "0", "3", "--threshold", "0.4",
                        "--out", str(tmp_path / "p.png"), "MODEL.WEIGHTS", weights])
    _png_ok(out)
    with pytest.raises(SystemExit, match="out of range"):
        _tool().main(["predictions", "--config-file", config, "--indices", "999", "--out", str(tmp_path / "q.png"),
                      "MODEL.WEIGHTS", weights])
