"""Saving under faults (disk full, kill), file modes, weights-only files, strict fit."""
import os
import stat

import pytest
import torch
import torch.nn as nn

from skinformer.checkpoint import (CheckpointSaveError, DetectionCheckpointer, IncompatibleCheckpointError,
                                   remove_stale_temporary_files, strip_checkpoint)
from skinformer.checkpoint import checkpointer as ckpt_module


def _model(width=8):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, width), nn.ReLU(), nn.Linear(width, 2))


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_disk_full_names_path_and_removes_partial_file(tmp_path, monkeypatch):
    ck = DetectionCheckpointer(_model(), str(tmp_path), save_to_disk=True)
    ck.save("model_0000001")
    good = (tmp_path / "model_0000001.pth").read_bytes()
    real_fdopen = os.fdopen

    def full_disk(fd, mode="r", *a, **k):
        # the temporary file exists, but every byte written to it hits a full device
        os.close(fd)
        return real_fdopen(os.open("/dev/full", os.O_WRONLY), mode, *a, **k)

    monkeypatch.setattr(ckpt_module.os, "fdopen", full_disk)
    with pytest.raises(CheckpointSaveError) as e:
        ck.save("model_0000002")
    msg = str(e.value)
    assert "No space left on device" in msg and str(tmp_path / "model_0000002.pth") in msg
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_0000001.pth"]  # no partial .tmp
    assert (tmp_path / "model_0000001.pth").read_bytes() == good
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000001.pth"


def test_stale_temporary_files_are_removed(tmp_path):
    (tmp_path / ".model_final.pth.abc123xy.tmp").write_bytes(b"x")
    (tmp_path / ".last_checkpoint.q1w2e3r4.tmp").write_bytes(b"x")
    (tmp_path / "data.tmp").write_bytes(b"user file")
    removed = remove_stale_temporary_files(str(tmp_path))
    assert len(removed) == 2 and sorted(os.listdir(tmp_path)) == ["data.tmp"]


def test_checkpoints_get_the_umask_mode(tmp_path):
    old = os.umask(0o022)
    try:
        ck = DetectionCheckpointer(_model(), str(tmp_path), save_to_disk=True)
        ck.save("model_0000000")
        ck.save_weights("model_final")
    finally:
        os.umask(old)
    for name in ("model_0000000.pth", "model_final.pth", "last_checkpoint"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o644, name


def test_strip_checkpoint_keeps_weights_only(tmp_path):
    model = _model()
    opt = torch.optim.Adam(model.parameters())
    model(torch.randn(3, 4)).sum().backward()
    opt.step()
    DetectionCheckpointer(model, str(tmp_path), save_to_disk=True, optimizer=opt).save("model_0000009",
                                                                                        iteration=9)
    info = strip_checkpoint(str(tmp_path / "model_0000009.pth"), str(tmp_path / "small.pth"))
    assert info["dst_bytes"] < info["src_bytes"] and info["num_weights"] == 4
    small = torch.load(tmp_path / "small.pth", weights_only=True)
    assert "optimizer" not in small and small["iteration"] == 9
    fresh = _model(8)
    nn.init.zeros_(fresh[0].weight)
    DetectionCheckpointer(fresh).load(str(tmp_path / "small.pth"), strict=True)
    assert torch.equal(fresh[0].weight, model[0].weight)
    with pytest.raises(ValueError, match="is the input"):
        strip_checkpoint(str(tmp_path / "small.pth"), str(tmp_path / "small.pth"))


def test_strip_foreign_file_keeps_its_names(tmp_path):
    torch.save({"state_dict": _model().state_dict(), "epoch": 3, "optimizer_states": [{"x": torch.zeros(2)}]},
               tmp_path / "lightning.ckpt")
    strip_checkpoint(str(tmp_path / "lightning.ckpt"), str(tmp_path / "w.pth"))
    assert set(torch.load(tmp_path / "w.pth", weights_only=True)) == {"model"}


def test_strict_load_lists_missing_and_shape_skipped_keys(tmp_path):
    DetectionCheckpointer(_model(8), str(tmp_path), save_to_disk=True).save("m")
    other = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2), nn.Linear(2, 2))
    with pytest.raises(IncompatibleCheckpointError) as e:
        DetectionCheckpointer(other).load(str(tmp_path / "m.pth"), source="MODEL.WEIGHTS", strict=True)
    msg = str(e.value)
    assert f"MODEL.WEIGHTS = '{tmp_path / 'm.pth'}'" in msg
    assert "missing from the file (2): 3.weight, 3.bias" in msg
    assert "0.weight (file (8, 4), model (16, 4))" in msg and "MODEL.ALLOW_PARTIAL_WEIGHTS True" in msg
    # the same file fits its own architecture
    DetectionCheckpointer(_model(8)).load(str(tmp_path / "m.pth"), strict=True)


def test_resume_or_load_strictness(tmp_path):
    DetectionCheckpointer(_model(8), str(tmp_path), save_to_disk=True).save("model_0000001")
    wide = DetectionCheckpointer(_model(16), str(tmp_path))
    with pytest.raises(IncompatibleCheckpointError):
        wide.resume_or_load("", resume=True)  # resuming another architecture
    with pytest.raises(IncompatibleCheckpointError):
        wide.resume_or_load(str(tmp_path / "model_0000001.pth"), resume=False, strict_weights=True)  # eval
    wide.resume_or_load(str(tmp_path / "model_0000001.pth"), resume=False)  # fine-tuning: partial, loud
    wide.resume_or_load("", resume=True, allow_partial=True)  # the explicit opt-out
