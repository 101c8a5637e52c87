import os

import numpy as np
import pytest
import torch

from skinformer.config import get_cfg
from skinformer.export import ExportError, export_model

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
QUICKSTART = os.path.join(REPO, "configs", "quickstart")


def _cfg(name, *opts):
    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(QUICKSTART, name))
    cfg.merge_from_list(list(opts))
    cfg.freeze()
    return cfg


def _load_tool():
    from skinformer.cli import export_model

    return export_model


@pytest.mark.slow
@pytest.mark.parametrize("config", ["per_pixel_r18_synthetic.yaml", "simaskformer_tiny_synthetic.yaml"])
def test_onnx_export_dynamic_size_matches_pytorch(config, tmp_path):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    path, rows = export_model(_cfg(config), "onnx", str(tmp_path), export_size=96)
    assert os.path.isfile(path) and path.endswith(".onnx")
    assert len(rows) == 3 and len({r["size"] for r in rows}) == 3
    for r in rows:
        assert r["max_abs_diff"] < 1e-3 and r["mask_agreement"] > 0.999
    # the graph accepts a size of our own and returns scores at that size
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    out = session.run(None, {"image": np.random.RandomState(0).randint(0, 255, (1, 3, 70, 133)).astype(np.float32)})[0]
    assert out.shape == (1, 1, 70, 133)
    assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1


@pytest.mark.slow
def test_torchscript_export_via_tool_with_weights(tmp_path, capsys):
    from skinformer.modeling.meta_arch.build import build_model

    cfg = _cfg("simaskformer_tiny_synthetic.yaml")
    torch.manual_seed(1)
    weights = tmp_path / "w.pth"
    torch.save({"model": build_model(cfg).state_dict()}, weights)
    tool = _load_tool()
    path, rows = tool.main(["--config-file", os.path.join(QUICKSTART, "simaskformer_tiny_synthetic.yaml"),
                            "--format", "torchscript", "--output", str(tmp_path / "ts"), "--export-size", "64",
                            "MODEL.WEIGHTS", str(weights)])
    printed = capsys.readouterr().out
    assert "parity vs PyTorch" in printed and printed.count("mask agreement") == 3
    assert all(r["max_abs_diff"] < 1e-4 for r in rows)
    module = torch.jit.load(path)
    x = torch.randint(0, 255, (1, 3, 50, 90)).float()
    assert module(x).shape == (1, 1, 50, 90)


def test_unknown_format_is_refused(tmp_path):
    with pytest.raises(ExportError, match="--format must be one of"):
        export_model(_cfg("per_pixel_r18_synthetic.yaml"), "tflite", str(tmp_path))
