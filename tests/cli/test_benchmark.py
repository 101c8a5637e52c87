"""skinformer.cli.benchmark (tools/benchmark.py): ratios against smp's DeepLabV3Plus("resnet50") in the
models section."""
import os
import types

import pytest

from skinformer.cli import benchmark as benchmark_module


@pytest.fixture(scope="module")
def bench():
    return benchmark_module


def _args(bench, **kw):
    args = bench.main.__globals__["argparse"].Namespace(
        configs=["configs/baselines/deeplabv3plus_R50_isic.yaml", "configs/isic2018/semantic-segmentation/"
                 "simaskformer_R50_bs16_steplr.yaml"], device="cpu", threads=1, iters=1, warmup=0,
        phases=["infer", "train"], json="", verbose=False, opts=[], baseline_config="", worker_config="")
    for k, v in kw.items():
        setattr(args, k, v)
    return args


def test_timed_phase_measures_smp_in_the_same_process(bench, monkeypatch):
    calls = []

    def make(name):
        return lambda *a: (lambda: calls.append(name))

    monkeypatch.setitem(bench._SMP_STEPS, "train_step", make("smp"))
    args = _args(bench, baseline_config="base.yaml", worker_config="model.yaml", iters=3)
    monkeypatch.setattr(bench, "_load_cfg", lambda *a: types.SimpleNamespace(MODEL=types.SimpleNamespace(DEVICE="cpu")))
    cfg = types.SimpleNamespace(MODEL=types.SimpleNamespace(DEVICE="cpu"))
    res = bench._timed_phase(make("model"), "train_step", cfg, args)
    assert {"train_step_s", "train_step_ratio", "train_step_smp_s", "train_step_smp_ratio"} <= set(res)
    # 1 warm-up + 3 interleaved rounds each (the model and the baseline share make_step here)
    assert calls.count("smp") == 4 and calls.count("model") == 8


def test_models_table_prints_both_ratios_against_smp(bench, monkeypatch, capsys):
    def fake_run(config, phase, args):
        slow = 3.0 if "simaskformer" in config else 1.0
        key = {"infer": "latency", "train": "train_step"}[phase]
        return {"ok": True, f"{key}_s": slow, f"{key}_ratio": slow, f"{key}_smp_s": 0.5,
                f"{key}_smp_ratio": 2 * slow}

    monkeypatch.setattr(bench, "_run_phase", fake_run)
    bench.section_models(_args(bench))
    out = capsys.readouterr().out
    assert "DeepLabV3Plus('resnet50')" in out
    line = next(ln for ln in out.splitlines() if ln.strip().startswith("simaskformer_R50") and "6.00x" in ln)
    assert line.count("6.00x") == 2 and "500" in line
    # one phase only: its ratio is printed, the other column is empty
    bench.section_models(_args(bench, phases=["infer"]))
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.strip().startswith("simaskformer_R50") and "6.00x" in ln)
    assert line.count("6.00x") == 1 and line.rstrip().endswith("-")


def test_models_table_prints_the_flop_ratio_against_smp(bench, monkeypatch, capsys):
    def fake_run(config, phase, args):
        flops = 78e9 if "simaskformer" in config else 69e9
        return {"ok": True, "params": 4e7, "flops": flops, "flops_smp": 36.5e9, "flops_smp_ratio": flops / 36.5e9}

    monkeypatch.setattr(bench, "_run_phase", fake_run)
    bench.section_models(_args(bench, phases=["static"]))
    out = capsys.readouterr().out
    header = next(ln for ln in out.splitlines() if "smp GFLOPs@512" in ln)
    assert "FLOPs ratio" in header
    line = next(ln for ln in out.splitlines() if ln.strip().startswith("simaskformer_R50") and "36.5" in ln)
    assert "2.14x" in line and line.rstrip().endswith("-")  # no timing phase ran


def test_count_flops_counts_a_convolution(bench):
    import torch

    conv = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False)
    flops, unsupported = bench._count_flops(conv, (torch.zeros(1, 3, 16, 16),))
    assert flops == 16 * 16 * 8 * 3 * 9 and unsupported == {}


def test_smp_reference_steps_run(bench):
    pytest.importorskip("segmentation_models_pytorch")
    import torch

    torch.set_num_threads(1)
    bench._smp_train_step("cpu")()
    bench._smp_infer_step("cpu")()


def test_config_paths_resolve_from_anywhere(bench, tmp_path, monkeypatch):
    # the README's "configs/..." names work outside the checkout (the workers get absolute paths)
    monkeypatch.chdir(tmp_path)
    path = bench._config_path("configs/baselines/deeplabv3plus_R50_isic.yaml")
    assert os.path.isabs(path) and os.path.isfile(path)
    own = tmp_path / "mine.yaml"
    own.write_text("MODEL: {}\n")
    assert bench._config_path("mine.yaml") == str(own)
