"""tools/generate_skin_masks.py and tools/create_skin_dataset.py (skinformer.data.skin_masks /
skin_dataset and their skinformer.cli programs) on synthetic capture pairs."""
import json
import os

import cv2
import numpy as np
import pytest

from skinformer.cli import create_skin_dataset as create_cli
from skinformer.cli import generate_skin_masks as gen_cli
from skinformer.data import skin_dataset as create
from skinformer.data import skin_masks as gen

H, W = 16, 20


def _base(seed=0):
    return np.random.default_rng(seed).integers(40, 200, (H, W, 3), dtype=np.uint8)


def _marked(base, diffs):
    """``diffs``: list of (y, x, (dB, dG, dR)) added to the original (BGR, as cv2 writes)."""
    out = base.astype(np.int32).copy()
    for y, x, d in diffs:
        out[y, x] += np.asarray(d)
    return np.clip(out, 0, 255).astype(np.uint8)


def _write(folder, name, img):
    folder.mkdir(parents=True, exist_ok=True)
    # lossless PNG keeps the known differences exact (the device writes JPEG)
    assert cv2.imwrite(str(folder / name), img)


def test_compute_mask_max_and_luminance_strictly_above_threshold():
    base = _base()
    diffs = [(1, 1, (0, 0, 21)), (2, 2, (0, 0, 20)), (3, 3, (25, 0, 0)), (4, 4, (0, 30, 0)), (5, 5, (7, 7, 7))]
    marked = _marked(base, diffs)
    m = gen.compute_mask(base, marked, 20, "max")
    expected = np.zeros((H, W), np.uint8)
    expected[1, 1] = expected[3, 3] = expected[4, 4] = 1  # 20 is not > 20
    assert m.dtype == np.uint8 and (m == expected).all()
    # luminance: BGR->gray weights 0.114 B + 0.587 G + 0.299 R of the absolute difference
    lum = gen.compute_mask(base, marked, 10, "luminance")
    expected_l = np.zeros((H, W), np.uint8)
    expected_l[4, 4] = 1  # 0.587 * 30 = 17.6 > 10; 0.299 * 21 = 6.3; 0.114 * 25 = 2.9; 7 -> 7
    assert (lum == expected_l).all()


def test_generate_masks_pairs_reports_and_writes_exact_masks(tmp_path):
    raw = tmp_path / "raw"
    b1, b2 = _base(1), _base(2)
    _write(raw, "001_org_acne.png", b1)
    _write(raw, "001_123_acne.png", _marked(b1, [(2, 3, (0, 50, 50)), (7, 8, (0, 0, 15))]))
    _write(raw, "a_b_org_acne.png", b2)  # ids may contain underscores
    _write(raw, "a_b_9_acne.png", _marked(b2, [(0, 0, (90, 0, 0))]))
    _write(raw, "002_org_acne.png", _base(3))  # no marked twin
    _write(raw, "003_org_acne.png", _base(4))  # two candidates
    _write(raw, "003_1_acne.png", _base(4))
    _write(raw, "003_2_acne.png", _base(4))
    _write(raw, "004_77_acne.png", _base(5))  # marked without original
    _write(raw, "005_org_hemo.png", _base(6))  # another type: ignored with --type acne
    _write(raw, "005_3_hemo.png", _marked(_base(6), [(1, 1, (0, 0, 11))]))

    report = gen.generate_masks(str(raw), "acne", progress=False)
    assert sorted(os.path.basename(p) for p in report.written) == ["001_mask_acne.png", "a_b_mask_acne.png"]
    assert [os.path.basename(p) for p in report.unpaired_originals] == ["002_org_acne.png"]
    assert [os.path.basename(p) for p in report.unpaired_marked] == ["004_77_acne.png"]
    assert [os.path.basename(p) for p in report.ambiguous] == ["003_org_acne.png"]
    m = cv2.imread(str(raw / "001_mask_acne.png"), cv2.IMREAD_UNCHANGED)
    expected = np.zeros((H, W), np.uint8)
    expected[2, 3] = 1  # 15 <= default acne threshold 20
    assert m.dtype == np.uint8 and (m == expected).all()
    summary = gen.format_summary(report)
    assert "002_org_acne.png" in summary and "004_77_acne.png" in summary and "003_1_acne.png" in summary

    # hemo's default threshold is 10: the 11-level difference counts
    gen.generate_masks(str(raw), "hemo", progress=False)
    hm = cv2.imread(str(raw / "005_mask_hemo.png"), cv2.IMREAD_UNCHANGED)
    assert hm[1, 1] == 1 and hm.sum() == 1
    assert gen.DEFAULT_THRESHOLDS == {"acne": 20, "hemo": 10, "mela": 22}


def test_generate_cli_strict_and_size_mismatch(tmp_path, capsys):
    raw = tmp_path / "raw"
    _write(raw, "001_org_mela.png", _base(1))
    _write(raw, "001_5_mela.png", np.zeros((H + 1, W, 3), np.uint8))
    assert gen_cli.main(["--dataset-dir", str(raw), "--strict"]) == 1
    out = capsys.readouterr().out
    assert "001_org_mela.png" in out and "differs" in out
    _write(raw, "001_5_mela.png", _base(1))
    assert gen_cli.main(["--dataset-dir", str(raw), "--strict", "--reduce", "luminance",
                     "--output-dir", str(tmp_path / "m")]) == 0
    assert (cv2.imread(str(tmp_path / "m" / "001_mask_mela.png"), cv2.IMREAD_UNCHANGED) == 0).all()


def _raw_pairs(folder, n, skin_type="acne"):
    folder.mkdir(parents=True)
    for i in range(n):
        _write(folder, f"{i:03d}_org_{skin_type}.jpg", _base(i))
        mask = (np.arange(H * W).reshape(H, W) % 2).astype(np.uint8)
        cv2.imwrite(str(folder / f"{i:03d}_mask_{skin_type}.png"), mask)


def test_create_skin_dataset_split_is_reproducible(tmp_path, capsys):
    raw = tmp_path / "raw"
    _raw_pairs(raw, 20)
    _write(raw, "999_org_acne.jpg", _base(99))  # no mask: left out
    a = create.create_skin_dataset(str(raw), "acne", str(tmp_path / "A"), 0.2, 0.1, seed=3, progress=False)
    b = create.create_skin_dataset(str(raw), "acne", str(tmp_path / "B"), 0.2, 0.1, seed=3, progress=False)
    c = create.create_skin_dataset(str(raw), "acne", str(tmp_path / "C"), 0.2, 0.1, seed=4, progress=False)
    assert a == b and a != c
    assert {k: len(v) for k, v in a.items()} == {"train": 14, "val": 4, "test": 2}
    assert sorted(sum(a.values(), [])) == [f"{i:03d}" for i in range(20)]
    base = tmp_path / "A" / "skin" / "acne"
    assert sorted(os.listdir(base / "val" / "images")) == [f"{i}_org_acne.jpg" for i in a["val"]]
    assert sorted(os.listdir(base / "val" / "masks")) == [f"{i}_mask_acne.png" for i in a["val"]]
    assert json.loads((base / "split.json").read_text())["seed"] == 3
    # refuses to mix splits unless told to overwrite
    with pytest.raises(FileExistsError):
        create.create_skin_dataset(str(raw), "acne", str(tmp_path / "A"), progress=False)
    # CLI with symlinks
    assert create_cli.main(["--raw-dir", str(raw), "--type", "acne", "--output-root", str(tmp_path / "L"),
                        "--link", "--seed", "3", "--val-fraction", "0.2", "--test-fraction", "0.1"]) == 0
    assert "train 14, val 4, test 2" in capsys.readouterr().out
    link = tmp_path / "L" / "skin" / "acne" / "test" / "images" / f"{a['test'][0]}_org_acne.jpg"
    assert link.is_symlink() and os.path.samefile(link, raw / link.name)


def test_create_skin_dataset_rejects_two_originals_for_one_id(tmp_path):
    raw = tmp_path / "raw"
    _raw_pairs(raw, 2)
    _write(raw, "001_org_acne.png", _base(1))
    with pytest.raises(ValueError, match="001_org_acne"):
        create.create_skin_dataset(str(raw), "acne", str(tmp_path / "out"), progress=False)
