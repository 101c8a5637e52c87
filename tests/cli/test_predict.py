"""tools/predict.py: masks at the original image size (binary 0/255) and overlays for a folder."""
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from skinformer.checkpoint import DetectionCheckpointer
from skinformer.cli import predict
from skinformer.config import get_cfg
from skinformer.modeling.meta_arch.build import build_model

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

CONFIG = os.path.join(ROOT, "configs", "quickstart", "per_pixel_r18_synthetic.yaml")
_SMALL = ["MODEL.TIMM.NAME", "resnet10t", "MODEL.SEM_SEG_HEAD.CONVS_DIM", "16", "INPUT.MIN_SIZE_TEST", "64"]


@pytest.fixture()
def weights(tmp_path):
    cfg = get_cfg()
    cfg.merge_from_file(CONFIG)
    cfg.merge_from_list(_SMALL)
    model = build_model(cfg)
    DetectionCheckpointer(model, save_dir=str(tmp_path)).save("m")
    return str(tmp_path / "m.pth")


def test_predict_folder_writes_masks_at_original_size(tmp_path, weights):
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for name, (h, w) in {"a.jpg": (90, 120), "b.png": (64, 50)}.items():
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(images / name)
    out = tmp_path / "out"
    rc = predict.main(["--config-file", CONFIG, "--input", str(images), "--output", str(out),
                       *_SMALL, "MODEL.WEIGHTS", weights])
    assert rc == 0
    a = np.asarray(Image.open(out / "masks" / "a.png"))
    b = np.asarray(Image.open(out / "masks" / "b.png"))
    assert a.shape == (90, 120) and b.shape == (64, 50)
    assert set(np.unique(a)) <= {0, 255}
    assert (out / "overlays" / "a.png").exists() and (out / "overlays" / "b.png").exists()


def test_predict_errors(tmp_path, weights):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        predict.main(["--config-file", CONFIG, "--input", str(tmp_path / "nowhere"), "--output", str(tmp_path),
                      *_SMALL, "MODEL.WEIGHTS", weights])
    with pytest.raises(SystemExit):  # no MODEL.WEIGHTS
        predict.main(["--config-file", CONFIG, "--input", str(tmp_path), "--output", str(tmp_path), *_SMALL])


def test_predict_never_overwrites_and_counts_files_written(tmp_path, weights, capsys):
    rng = np.random.default_rng(0)
    for sub, name in [("x", "case1.jpg"), ("x", "case1.png"), ("y", "case1.jpg")]:
        (tmp_path / sub).mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (40, 30, 3), dtype=np.uint8)).save(tmp_path / sub / name)
    out = tmp_path / "out"
    rc = predict.main(["--config-file", CONFIG, "--input", str(tmp_path / "x"), str(tmp_path / "y"),
                       str(tmp_path / "x" / "case1.jpg"), "--output", str(out), "--no-overlay",
                       *_SMALL, "MODEL.WEIGHTS", weights, "TEST.AUG.ENABLED", "True", "TEST.AUG.MIN_SIZES", "(32, 64)"])
    assert rc == 0
    masks = sorted(str(p.relative_to(out / "masks")) for p in (out / "masks").rglob("*.png"))
    assert masks == ["case1.png.png", "x/case1.jpg.png", "y/case1.jpg.png"]
    assert "Wrote 3 files for 3 images" in capsys.readouterr().out


def test_predict_stops_before_predicting_when_names_differ_only_in_case(tmp_path, weights):
    images = tmp_path / "images"
    images.mkdir()
    for name in ("a.JPG", "a.jpg"):
        Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(images / name, format="JPEG")
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="a.JPG"):
        predict.main(["--config-file", CONFIG, "--input", str(images), "--output", str(out),
                      *_SMALL, "MODEL.WEIGHTS", weights])
    assert not list(out.rglob("*.png"))


def test_predict_probabilities_csv_threshold_and_skip_bad(tmp_path, weights, capsys):
    import csv

    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 30, 3), dtype=np.uint8)).save(images / "a.png")
    (images / "broken.jpg").write_bytes(b"not an image")
    out = tmp_path / "out"
    args = ["--config-file", CONFIG, "--input", str(images), "--output", str(out), "--no-overlay",
            "--probabilities", "npy", "--threshold", "0.01"]
    opts = [*_SMALL, "MODEL.WEIGHTS", weights]
    with pytest.raises(ValueError, match="broken.jpg"):
        predict.main(args + opts)
    assert predict.main(args + ["--skip-bad"] + opts) == 0
    text = capsys.readouterr().out
    assert "Skipped 1 unreadable images" in text and "broken.jpg" in text
    probs = np.load(out / "probabilities" / "a.npy")
    assert probs.dtype == np.float16 and probs.shape == (1, 40, 30)
    mask = np.asarray(Image.open(out / "masks" / "a.png"))
    # threshold 0.01: every pixel scoring above it is lesion
    assert ((mask == 255) == (probs[0].astype(np.float32) > 0.01)).mean() > 0.99
    rows = list(csv.DictReader(open(out / "predictions.csv")))
    assert len(rows) == 1 and rows[0]["height"] == "40" and rows[0]["width"] == "30"
    assert int(rows[0]["foreground_pixels"]) == int((mask == 255).sum())
    predict.main(["--config-file", CONFIG, "--input", str(images / "a.png"), "--output", str(out),
                  "--no-overlay", "--probabilities", "png", *_SMALL, "MODEL.WEIGHTS", weights])
    png = np.asarray(Image.open(out / "probabilities" / "a_lesion.png"))
    assert png.dtype == np.uint8 and np.abs(png / 255.0 - probs[0]).max() < 0.01


def test_tools_wrapper_runs_the_package_program():
    out = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "predict.py"), "--help"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "--skip-bad" in out.stdout
