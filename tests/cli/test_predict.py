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


def _lesion_images(tmp_path, sizes):
    """Random images and rectangular 0/255 ground-truth masks (``<stem>_segmentation.png``)."""
    images, gts = tmp_path / "images", tmp_path / "gt"
    images.mkdir()
    gts.mkdir()
    rng = np.random.default_rng(1)
    for stem, (h, w) in sizes.items():
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(images / f"{stem}.png")
        gt = np.zeros((h, w), np.uint8)
        gt[h // 4: 3 * h // 4, w // 5: 3 * w // 5] = 255
        Image.fromarray(gt).save(gts / f"{stem}_segmentation.png")
    return images, gts


def _read_csv(path):
    import csv

    with open(path, newline="") as f:
        return {os.path.basename(r["file"]): r for r in csv.DictReader(f)}


def test_predict_with_ground_truth_writes_per_image_metrics(tmp_path, weights, capsys):
    images, gts = _lesion_images(tmp_path, {"a": (60, 80), "b": (48, 40)})
    os.remove(gts / "b_segmentation.png")  # an image without ground truth
    args = ["--config-file", CONFIG, "--input", str(images), "--gt-suffix", "_segmentation.png"]
    overrides = [*_SMALL, "MODEL.WEIGHTS", weights]
    # the (random) model's median score as threshold: about half of the image is foreground
    assert predict.main([*args, "--output", str(tmp_path / "first"), "--probabilities", "npy", *overrides]) == 0
    scores = np.load(tmp_path / "first" / "probabilities" / "a.npy").astype(np.float64)[0]
    threshold = float(np.clip(np.median(scores), 1e-3, 1 - 1e-3))
    # a ground truth that overlaps that prediction in part: TP, FP and FN all > 0
    pred = scores.reshape(-1) > threshold
    inside, outside = np.flatnonzero(pred), np.flatnonzero(~pred)
    gt = pred.copy()
    gt[inside[: len(inside) // 2]] = False
    gt[outside[: len(outside) // 3]] = True
    Image.fromarray(gt.reshape(60, 80).astype(np.uint8) * 255).save(gts / "a_segmentation.png")

    out = tmp_path / "out"
    assert predict.main([*args, "--output", str(out), "--gt", str(gts), "--threshold", str(threshold),
                         *overrides]) == 0
    printed = capsys.readouterr().out
    assert f"Loading model weights from {weights}" in printed
    assert "1 image(s) have no ground truth" in printed
    rows = _read_csv(out / "predictions.csv")
    # computed here from the written mask and the ground-truth file, independently of the package
    pred = np.asarray(Image.open(out / "masks" / "a.png")) == 255
    gt = np.asarray(Image.open(gts / "a_segmentation.png")) == 255
    tp, fp, fn = (pred & gt).sum(), (pred & ~gt).sum(), (~pred & gt).sum()
    assert tp > 0 and fp > 0 and fn > 0
    expected = {"jaccard": tp / (tp + fp + fn), "dice": 2 * tp / (2 * tp + fp + fn),
                "precision": tp / (tp + fp), "recall": tp / (tp + fn)}
    a = rows["a.png"]
    assert a["gt"] == str(gts / "a_segmentation.png")
    for key, value in expected.items():
        assert float(a[key]) == pytest.approx(value, abs=1e-6), key
    b = rows["b.png"]
    assert b["gt"] == "" and all(b[k] == "" for k in expected)


def test_predict_draws_the_ground_truth_outline_on_the_overlay(tmp_path, weights):
    import cv2

    images, gts = _lesion_images(tmp_path, {"a": (60, 80)})
    args = ["--config-file", CONFIG, "--input", str(images), "--gt-suffix", "_segmentation.png"]
    overrides = [*_SMALL, "MODEL.WEIGHTS", weights]
    assert predict.main([*args, "--output", str(tmp_path / "plain"), *overrides]) == 0
    assert predict.main([*args, "--output", str(tmp_path / "gt"), "--gt", str(gts), *overrides]) == 0
    plain = cv2.imread(str(tmp_path / "plain" / "overlays" / "a.png"))
    with_gt = cv2.imread(str(tmp_path / "gt" / "overlays" / "a.png"))
    changed = (plain != with_gt).any(axis=2)
    gt = (np.asarray(Image.open(gts / "a_segmentation.png")) == 255).astype(np.uint8)
    k = np.ones((3, 3), np.uint8)
    band = cv2.dilate(gt, k).astype(bool) & ~cv2.erode(gt, k).astype(bool)
    # the outline: on the lesion's border, all around it, and nowhere else
    assert changed.any() and not (changed & ~band).any()
    assert changed[15, 16] and changed[44, 47]  # corners of the 60x80 lesion rectangle [15:45, 16:48]


def test_predict_ground_truth_errors(tmp_path, weights):
    images, gts = _lesion_images(tmp_path, {"a": (30, 30)})
    base = ["--config-file", CONFIG, "--input", str(images), "--output", str(tmp_path / "out")]
    overrides = [*_SMALL, "MODEL.WEIGHTS", weights]
    with pytest.raises(FileNotFoundError, match="_mask.png"):  # no file matches the suffix
        predict.main([*base, "--gt", str(gts), "--gt-suffix", "_mask.png", *overrides])
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        predict.main([*base, "--gt", str(tmp_path / "nowhere"), *overrides])
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(gts / "a_segmentation.png")
    with pytest.raises(ValueError, match="a_segmentation.png"):  # wrong size
        predict.main([*base, "--gt", str(gts), "--gt-suffix", "_segmentation.png", *overrides])
