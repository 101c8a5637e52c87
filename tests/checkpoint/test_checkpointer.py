"""DetectionCheckpointer: atomic writes, weights_only loading, resume fallback, clear errors."""
import logging
import os

import numpy as np
import pytest
import torch
import torch.nn as nn

from skinformer.checkpoint import (CorruptCheckpointError, DetectionCheckpointer, UnsafeCheckpointError,
                                   make_weights_only_safe)


def _model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))


class _State:
    """A checkpointable with numpy inside its state (must still load with weights_only)."""

    def __init__(self):
        self.value = np.arange(3)
        self.step = np.int64(7)

    def state_dict(self):
        return {"value": self.value, "step": self.step, "tuple": (1, 2.5, "x")}

    def load_state_dict(self, s):
        self.value, self.step = s["value"], s["step"]


@pytest.fixture
def ckpt_log(caplog):
    lg = logging.getLogger("skinformer.checkpoint.checkpointer")
    lg.addHandler(caplog.handler)
    caplog.set_level(logging.INFO, logger="skinformer.checkpoint.checkpointer")
    yield caplog
    lg.removeHandler(caplog.handler)


def test_save_load_roundtrip_weights_only(tmp_path):
    m, state = _model(0), _State()
    ck = DetectionCheckpointer(m, str(tmp_path), save_to_disk=True, extra=state)
    ck.save("model_0000001", iteration=1)
    raw = torch.load(tmp_path / "model_0000001.pth", weights_only=True)  # must not raise
    assert raw["iteration"] == 1 and torch.equal(raw["extra"]["value"], torch.arange(3))
    m2, state2 = _model(1), _State()
    state2.value = None
    extra = DetectionCheckpointer(m2, str(tmp_path), extra=state2).load(str(tmp_path / "model_0000001.pth"))
    assert extra == {"iteration": 1}
    for a, b in zip(m.state_dict().values(), m2.state_dict().values()):
        assert torch.equal(a, b)
    assert torch.equal(torch.as_tensor(state2.value), torch.arange(3))
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000001.pth"
    assert [p for p in os.listdir(tmp_path) if p.endswith(".tmp")] == []


def test_unsafe_state_is_refused_at_save():
    class Obj:
        pass

    with pytest.raises(TypeError, match=r"checkpoint\.a\.b"):
        make_weights_only_safe({"a": {"b": Obj()}})


def test_crash_while_writing_keeps_previous_checkpoint(tmp_path, monkeypatch):
    m = _model()
    ck = DetectionCheckpointer(m, str(tmp_path), save_to_disk=True)
    ck.save("model_0000001", iteration=1)
    real_save = torch.save

    def half_then_crash(obj, f, *a, **k):
        import io

        buf = io.BytesIO()
        real_save(obj, buf, *a, **k)
        data = buf.getvalue()
        f.write(data[: len(data) // 2])
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(torch, "save", half_then_crash)
    with pytest.raises(OSError, match="simulated"):
        ck.save("model_0000002", iteration=2)
    monkeypatch.setattr(torch, "save", real_save)
    assert not (tmp_path / "model_0000002.pth").exists()
    assert [p for p in os.listdir(tmp_path) if p.endswith(".tmp")] == []
    assert ck.get_checkpoint_file().endswith("model_0000001.pth")
    assert DetectionCheckpointer(_model(1), str(tmp_path)).resume_or_load("", resume=True)["iteration"] == 1


def test_truncated_last_checkpoint_falls_back(tmp_path, ckpt_log):
    ck = DetectionCheckpointer(_model(), str(tmp_path), save_to_disk=True)
    ck.save("model_0000001", iteration=1)
    ck.save("model_0000003", iteration=3)
    path = tmp_path / "model_0000003.pth"
    path.write_bytes(path.read_bytes()[:100])  # truncated
    extra = DetectionCheckpointer(_model(1), str(tmp_path)).resume_or_load("", resume=True)
    assert extra["iteration"] == 1
    errors = [r.getMessage() for r in ckpt_log.records if r.levelno >= logging.ERROR]
    assert any("model_0000003.pth" in e for e in errors), errors


def test_all_checkpoints_corrupt_is_an_error(tmp_path):
    ck = DetectionCheckpointer(_model(), str(tmp_path), save_to_disk=True)
    ck.save("model_0000001")
    (tmp_path / "model_0000001.pth").write_bytes(b"garbage")
    with pytest.raises(CorruptCheckpointError, match="last_checkpoint"):
        DetectionCheckpointer(_model(), str(tmp_path)).resume_or_load("", resume=True)


def test_missing_weights_names_key_and_path(tmp_path):
    ck = DetectionCheckpointer(_model(), str(tmp_path))
    with pytest.raises(FileNotFoundError) as e:
        ck.resume_or_load(str(tmp_path / "nope.pth"), resume=False)
    assert "MODEL.WEIGHTS" in str(e.value) and "nope.pth" in str(e.value)


def test_corrupt_weights_names_file(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"\x00not a checkpoint")
    with pytest.raises(CorruptCheckpointError, match="bad.pth"):
        DetectionCheckpointer(_model(), str(tmp_path)).load(str(bad), source="MODEL.WEIGHTS")


def test_pickled_objects_are_refused(tmp_path):
    import argparse

    f = tmp_path / "evil.pth"
    torch.save({"model": _model().state_dict(), "obj": argparse.Namespace(a=1)}, f)
    with pytest.raises(UnsafeCheckpointError, match="evil.pth"):
        DetectionCheckpointer(_model(), str(tmp_path)).load(str(f))


def test_incompatible_keys_are_reported(tmp_path, caplog):
    # fvcore's incompatible-key report goes through the checkpointer's logger
    ck = DetectionCheckpointer(nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 3)), str(tmp_path))
    ck.logger.addHandler(caplog.handler)
    caplog.set_level(logging.INFO)
    src = DetectionCheckpointer(_model(), str(tmp_path), save_to_disk=True)
    src.save("m")
    ck.load(str(tmp_path / "m.pth"))
    text = "\n".join(r.getMessage() for r in caplog.records)
    ck.logger.removeHandler(caplog.handler)
    # one warning lists the shape-skipped and the unused keys by name
    assert "other shape in the file, skipped (" in text and "1.weight (file (8,), model (3, 8))" in text
    assert "does not fit the model" in text
