"""tools/evaluate.py (skinformer.cli.evaluate) end to end on temporary folders, including the error cases."""
import json
import os

import numpy as np
import pytest

from eval_helpers import rect, write_mask

from skinformer.structures.label_space import LabelSpace



@pytest.fixture(scope="module")
def tool():
    from skinformer.cli import evaluate

    return evaluate


@pytest.fixture
def task1_dirs(tmp_path):
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    # J 0.6, J 0.7, both empty; predictions as 0/1 PNGs, ground truth 0/255
    cases = {"ISIC_0000001": (rect(4, 10, 0, 1, 0, 10), rect(4, 10, 0, 1, 0, 6)),
             "ISIC_0000002": (rect(4, 10, 0, 1, 0, 10), rect(4, 10, 0, 1, 0, 7)),
             "ISIC_0000003": (np.zeros((5, 7), bool), np.zeros((5, 7), bool))}
    for key, (g, p) in cases.items():
        write_mask(gt / f"{key}_segmentation.png", g)
        write_mask(pred / f"{key}.png", p, scale=1)
    (gt / "LICENSE.txt").write_text("not a mask")
    return gt, pred


def test_task1_and_pooled(tool, task1_dirs, tmp_path, capsys):
    gt, pred = task1_dirs
    out = tmp_path / "res" / "task1.json"
    assert tool.main(["--gt-dir", str(gt), "--pred-dir", str(pred), "--metric", "isic_task1", "--output", str(out)]) == 0
    rep = json.loads(out.read_text())
    assert rep["num_images"] == 3
    assert rep["results"]["threshold_jaccard"] == pytest.approx(1.7 / 3)
    assert rep["results"]["jaccard"] == pytest.approx(2.3 / 3)
    assert rep["results"]["pooled_iou"] == pytest.approx(13 / 20)
    assert [r["key"] for r in rep["per_image"]] == ["ISIC_0000001", "ISIC_0000002", "ISIC_0000003"]
    assert "threshold_jaccard" in capsys.readouterr().out
    out2 = tmp_path / "pooled.json"
    assert tool.main(["--gt-dir", str(gt), "--pred-dir", str(pred), "--metric", "binary_pooled", "--output", str(out2)]) == 0
    res = json.loads(out2.read_text())["results"]
    assert set(res) == {"precision", "recall", "accuracy", "dice", "iou"}
    assert res["iou"] == pytest.approx(13 / 20)


def test_library_scoring_is_what_the_command_reports(tool, task1_dirs, tmp_path):
    """skinformer.evaluation.folder.score_folders without argparse: same report as the command."""
    from skinformer.evaluation.folder import MaskFolderError, resolve_pred_suffix, score_folders

    gt, pred = task1_dirs
    rep = score_folders(str(gt), str(pred), "isic_task1")
    assert rep == tool.run(tool.build_parser().parse_args(["--gt-dir", str(gt), "--pred-dir", str(pred),
                                                           "--metric", "isic_task1"]))
    assert rep["results"]["threshold_jaccard"] == pytest.approx(1.7 / 3)
    assert score_folders(str(gt), str(pred), "binary_pooled", threshold=0)["results"]["iou"] == pytest.approx(13 / 20)
    with pytest.raises(MaskFolderError, match=r"Unknown metric 'dice'.*isic_task1"):
        score_folders(str(gt), str(pred), "dice")
    # the ISIC submission rule: predictions carrying the ground-truth names pair by name
    assert resolve_pred_suffix(str(pred), "_segmentation.png") == ".png"
    same = tmp_path / "same"
    same.mkdir()
    (same / "ISIC_0000001_segmentation.png").write_bytes(b"")
    assert resolve_pred_suffix(str(same), "_segmentation.png") == "_segmentation.png"
    assert resolve_pred_suffix(str(same), "_segmentation.png", "_mask.png") == "_mask.png"


def test_threshold_flag(tool, tmp_path):
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    write_mask(gt / "a_segmentation.png", np.array([[255, 0, 255]], dtype=np.uint8))
    write_mask(pred / "a.png", np.array([[128, 0, 255]], dtype=np.uint8))
    args = ["--gt-dir", str(gt), "--pred-dir", str(pred), "--metric", "binary_pooled"]
    r127 = tool.run(tool.build_parser().parse_args(args))["results"]
    r128 = tool.run(tool.build_parser().parse_args(args + ["--threshold", "128"]))["results"]
    assert r127["iou"] == 1.0 and r128["iou"] == 0.5


def test_errors_unmatched_size_unreadable(tool, task1_dirs, capsys):
    gt, pred = task1_dirs
    base = ["--gt-dir", str(gt), "--pred-dir", str(pred), "--metric", "isic_task1"]
    # a prediction without ground truth
    write_mask(pred / "ISIC_0000009.png", np.zeros((3, 3), bool))
    assert tool.main(base) == 2
    assert "ISIC_0000009.png" in capsys.readouterr().err
    os.remove(pred / "ISIC_0000009.png")
    # ground truth without a prediction
    os.rename(pred / "ISIC_0000002.png", pred / "moved.bin")
    with pytest.raises(tool.MaskFolderError, match="ISIC_0000002_segmentation.png"):
        tool.run(tool.build_parser().parse_args(base))
    os.rename(pred / "moved.bin", pred / "ISIC_0000002.png")
    # size mismatch
    write_mask(pred / "ISIC_0000003.png", np.zeros((6, 7), bool))
    with pytest.raises(tool.MaskFolderError, match="ISIC_0000003.png.*7×6.*original resolution"):
        tool.run(tool.build_parser().parse_args(base))
    # unreadable file
    (pred / "ISIC_0000003.png").write_bytes(b"not a png")
    assert tool.main(base) == 2
    assert "ISIC_0000003.png" in capsys.readouterr().err
    # no files with the suffix
    with pytest.raises(tool.MaskFolderError, match="--pred-suffix"):
        tool.run(tool.build_parser().parse_args(base + ["--pred-suffix", ".tif"]))


def test_task2(tool, tmp_path):
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    gtA = {"a": np.array([[1, 1], [0, 0]], bool), "b": np.zeros((2, 2), bool), "c": np.zeros((2, 2), bool)}
    prA = {"a": np.array([[1, 0], [1, 0]], bool), "b": np.zeros((2, 2), bool), "c": np.array([[1, 0], [0, 0]], bool)}
    gtB = {"a": rect(4, 4, 0, 2, 0, 4), "b": np.zeros((4, 4), bool), "c": np.zeros((4, 4), bool)}
    for img, g, p in (("ISIC_0000001", gtA, prA), ("ISIC_0000002", gtB, gtB)):
        for a in "abc":
            write_mask(gt / f"{img}_attribute_{a}.png", g[a])
            write_mask(pred / f"{img}_attribute_{a}.png", p[a])
    out = tmp_path / "t2.json"
    assert tool.main(["--gt-dir", str(gt), "--pred-dir", str(pred), "--metric", "isic_task2", "--output", str(out)]) == 0
    rep = json.loads(out.read_text())
    assert rep["num_images"] == 2 and rep["attributes"] == ["a", "b", "c"]
    r = rep["results"]
    assert r["jaccard-a"] == pytest.approx(0.6) and r["jaccard-b"] == 1.0 and r["jaccard-c"] == 0.0
    assert r["jaccard_micro"] == pytest.approx(0.5)
    # a subset of attributes, in the given order
    r2 = tool.run(tool.build_parser().parse_args(["--gt-dir", str(gt), "--pred-dir", str(pred), "--metric", "isic_task2",
                                                  "--attributes", "b", "a"]))
    assert r2["attributes"] == ["b", "a"] and r2["results"]["jaccard_micro"] == pytest.approx(0.6)
    # a prediction missing for one attribute
    os.remove(pred / "ISIC_0000002_attribute_c.png")
    with pytest.raises(tool.MaskFolderError, match="ISIC_0000002_attribute_c.png"):
        tool.run(tool.build_parser().parse_args(["--gt-dir", str(gt), "--pred-dir", str(pred), "--metric", "isic_task2"]))
    # badly named file
    write_mask(pred / "ISIC_0000002_c.png", np.zeros((4, 4), bool))
    with pytest.raises(tool.MaskFolderError, match="_attribute_"):
        tool.run(tool.build_parser().parse_args(["--gt-dir", str(gt), "--pred-dir", str(pred), "--metric", "isic_task2"]))
    with pytest.raises(tool.MaskFolderError, match="zzz"):
        tool.run(tool.build_parser().parse_args(["--gt-dir", str(gt), "--pred-dir", str(gt), "--metric", "isic_task2",
                                                 "--attributes", "zzz"]))


def test_sem_seg(tool, tmp_path):
    from skinformer.evaluation import metrics as M
    import torch

    rng = np.random.default_rng(0)
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    conf = torch.zeros(4, 4, dtype=torch.int64)
    for i in range(3):
        g = rng.integers(0, 4, size=(6, 9)).astype(np.uint8)
        g[0, 0] = 255
        p = rng.integers(0, 4, size=(6, 9)).astype(np.uint8)
        write_mask(gt / f"im{i}.png", g)
        write_mask(pred / f"im{i}.png", p)
        conf += M.confusion_matrix(torch.from_numpy(p), torch.from_numpy(g), 4, 255)
    out = tmp_path / "ss.json"
    args = ["--gt-dir", str(gt), "--pred-dir", str(pred), "--metric", "sem_seg", "--num-classes", "3",
            "--class-names", "x", "y", "z", "--output", str(out)]
    assert tool.main(args) == 0
    rep = json.loads(out.read_text())
    assert rep["confusion_matrix"] == conf.tolist()
    assert rep["results"]["mIoU"] == pytest.approx(M.sem_seg_summary(conf, LabelSpace(classes=("x", "y", "z")))["mIoU"])
    # label 3 is background here; with a background class among 3 classes it is out of range
    with pytest.raises(tool.MaskFolderError, match="outside 0..2"):
        tool.run(tool.build_parser().parse_args(args[:-2] + ["--has-background-class"]))
    with pytest.raises(tool.MaskFolderError, match="--num-classes"):
        tool.run(tool.build_parser().parse_args(["--gt-dir", str(gt), "--pred-dir", str(pred), "--metric", "sem_seg"]))


def test_identical_names_pair_without_pred_suffix(tool, tmp_path):
    """ISIC submission names equal the ground-truth names: they pair by default."""
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    for key in ("ISIC_0000001", "ISIC_0000002"):
        write_mask(gt / f"{key}_segmentation.png", rect(4, 6, 0, 2, 0, 6))
        write_mask(pred / f"{key}_segmentation.png", rect(4, 6, 0, 2, 0, 6))
    rep = tool.run(tool.build_parser().parse_args(["--gt-dir", str(gt), "--pred-dir", str(pred),
                                                   "--metric", "isic_task1"]))
    assert rep["num_images"] == 2 and rep["results"]["jaccard"] == pytest.approx(1.0)


def test_red_colour_masks_are_foreground(tool, tmp_path):
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    red = np.zeros((4, 6, 3), np.uint8)
    red[:2, :, 0] = 255
    write_mask(gt / "a_segmentation.png", red)
    write_mask(pred / "a.png", rect(4, 6, 0, 2, 0, 6))
    rep = tool.run(tool.build_parser().parse_args(["--gt-dir", str(gt), "--pred-dir", str(pred),
                                                   "--metric", "binary_pooled"]))
    assert rep["results"]["iou"] == pytest.approx(1.0)


def test_label_map_prediction_is_an_error_naming_file_and_values(tool, tmp_path, capsys):
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    write_mask(gt / "a_segmentation.png", rect(4, 6, 0, 2, 0, 6))
    bad = write_mask(pred / "a.png", np.array([[0, 1, 2, 2, 0, 0]] * 4, np.uint8))
    assert tool.main(["--gt-dir", str(gt), "--pred-dir", str(pred), "--metric", "isic_task1"]) == 2
    err = capsys.readouterr().err
    assert bad in err and "[0, 1, 2]" in err
    # soft grey maps stay accepted
    write_mask(pred / "a.png", np.array([[200, 180, 255, 130, 0, 0]] * 2 + [[10, 0, 60, 0, 0, 0]] * 2, np.uint8))
    assert tool.main(["--gt-dir", str(gt), "--pred-dir", str(pred), "--metric", "isic_task1"]) == 0
