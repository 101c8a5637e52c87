"""tools/strip_checkpoint.py: a weights-only copy of any checkpoint, clear errors."""
import os
import subprocess
import sys

import torch
import torch.nn as nn

from skinformer.checkpoint import DetectionCheckpointer

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SCRIPT = os.path.join(ROOT, "tools", "strip_checkpoint.py")


def _run(*args):
    return subprocess.run([sys.executable, SCRIPT, *map(str, args)], capture_output=True, text=True, timeout=120)


def test_strip_tool(tmp_path):
    model = nn.Linear(8, 8)
    opt = torch.optim.Adam(model.parameters())
    model(torch.randn(2, 8)).sum().backward()
    opt.step()
    DetectionCheckpointer(model, str(tmp_path), save_to_disk=True, optimizer=opt).save("model_0000004", iteration=4)
    r = _run(tmp_path / "model_0000004.pth", tmp_path / "w.pth")
    assert r.returncode == 0, r.stderr
    assert "2 weights" in r.stdout
    assert set(torch.load(tmp_path / "w.pth", weights_only=True)) == {"model", "iteration", "__skinformer_format__"}


def test_strip_tool_errors(tmp_path):
    r = _run(tmp_path / "nope.pth", tmp_path / "w.pth")
    assert r.returncode == 2 and "nope.pth" in r.stderr and "Traceback" not in r.stderr
    (tmp_path / "junk.pth").write_bytes(b"\x00garbage")
    r = _run(tmp_path / "junk.pth", tmp_path / "w.pth")
    assert r.returncode == 2 and "junk.pth" in r.stderr and "corrupt" in r.stderr
