"""Nothing lost, nothing silent in the training workflow: OUTPUT_DIR of an earlier run,
resume's metrics.json, checkpoints that do not fit, partial temp files, flags after overrides."""
import argparse
import json
import logging
import os

import pytest

from engine_toy import ToyModel, ToyTrainer, toy_cfg, train_until_interrupted
from skinformer.checkpoint import IncompatibleCheckpointError
from skinformer.engine import OutputDirError, default_argument_parser, default_setup, prepare_output_dir
from skinformer.utils.env import seed_all_rng

_TIMING = {"time", "data_time", "eta_seconds"}


def _metrics(path):
    rows = [json.loads(l) for l in open(path).read().splitlines()]
    return [{k: v for k, v in r.items() if k not in _TIMING} for r in rows]


def test_resumed_metrics_json_equals_uninterrupted(tmp_path):
    n = 12
    ToyTrainer.eval_calls = []
    seed_all_rng(0)
    ToyTrainer(toy_cfg(str(tmp_path / "a"), **{"SOLVER.MAX_ITER": n})).train()

    seed_all_rng(0)
    first = ToyTrainer(toy_cfg(str(tmp_path / "b"), **{"SOLVER.MAX_ITER": n}))

    train_until_interrupted(first, 6)  # rows 4 and 5 are written after the checkpoint of iteration 3
    assert [r["iteration"] for r in _metrics(tmp_path / "b" / "metrics.json")][:6] == list(range(6))

    resumed = ToyTrainer(toy_cfg(str(tmp_path / "b"), **{"SOLVER.MAX_ITER": n}))
    resumed.resume_or_load(resume=True)
    assert resumed.start_iter == 4
    ToyTrainer.eval_calls = []  # the toy's fake score counts evaluations
    resumed.train()
    straight = _metrics(tmp_path / "a" / "metrics.json")
    after = _metrics(tmp_path / "b" / "metrics.json")
    assert [r["iteration"] for r in after] == [r["iteration"] for r in straight]  # no row twice
    assert after == straight  # smoothed medians included: the window was restored


def test_output_dir_of_an_earlier_run_is_refused(tmp_path):
    out = str(tmp_path / "run")
    ToyTrainer.eval_calls = []
    ToyTrainer(toy_cfg(out, **{"SOLVER.MAX_ITER": 4})).train()
    before = open(os.path.join(out, "metrics.json")).read()
    with pytest.raises(OutputDirError) as e:
        prepare_output_dir(out)
    msg = str(e.value)
    assert out in msg and "last_checkpoint" in msg and "--resume" in msg and "--overwrite" in msg
    prepare_output_dir(out, resume=True)  # allowed, nothing touched
    prepare_output_dir(out, eval_only=True)
    assert open(os.path.join(out, "metrics.json")).read() == before
    prepare_output_dir(str(tmp_path / "fresh"))  # a new folder is fine


def test_overwrite_deletes_the_earlier_run(tmp_path):
    out = str(tmp_path / "run")
    ToyTrainer.eval_calls = []
    ToyTrainer(toy_cfg(out, **{"SOLVER.MAX_ITER": 4})).train()
    open(os.path.join(out, "notes.txt"), "w").write("mine")
    prepare_output_dir(out, overwrite=True)
    assert sorted(os.listdir(out)) == ["notes.txt"]  # checkpoints + metrics gone, user files kept


def test_default_setup_refuses_before_writing(tmp_path):
    out = str(tmp_path / "run")
    ToyTrainer.eval_calls = []
    ToyTrainer(toy_cfg(out, **{"SOLVER.MAX_ITER": 4})).train()
    open(os.path.join(out, "config.yaml"), "w").write("earlier")
    cfg = toy_cfg(out)
    args = argparse.Namespace(config_file="", resume=False, overwrite=False, eval_only=False, opts=[])
    with pytest.raises(OutputDirError):
        default_setup(cfg, args)
    assert open(os.path.join(out, "config.yaml")).read() == "earlier"
    # an evaluation into the run's folder keeps its config.yaml
    default_setup(cfg, argparse.Namespace(config_file="", resume=False, overwrite=False, eval_only=True, opts=[]))
    assert open(os.path.join(out, "config.yaml")).read() == "earlier"
    assert os.path.exists(os.path.join(out, "config_eval.yaml"))


def test_switches_after_the_overrides_are_applied():
    parser = default_argument_parser()
    args = parser.parse_args(["--config-file", "c.yaml", "SOLVER.MAX_ITER", "5", "--resume", "OUTPUT_DIR", "o"])
    assert args.resume and args.opts == ["SOLVER.MAX_ITER", "5", "OUTPUT_DIR", "o"]
    args = parser.parse_args(["SOLVER.BASE_LR", "-0.5", "--eval-only", "--overwrite"])
    assert args.eval_only and args.overwrite and args.opts == ["SOLVER.BASE_LR", "-0.5"]


def test_flag_with_value_after_the_overrides_is_a_clear_error(capsys):
    with pytest.raises(SystemExit):
        default_argument_parser().parse_args(["SOLVER.MAX_ITER", "5", "--num-gpus", "2"])
    assert "'--num-gpus' comes after the KEY VALUE config overrides" in capsys.readouterr().err


class _WiderToy(ToyTrainer):
    @classmethod
    def build_model(cls, cfg):
        return ToyModel(cfg, hidden=32)  # another architecture: every shape differs


def test_resume_after_architecture_change_lists_keys_before_the_optimizer(tmp_path):
    out = str(tmp_path / "run")
    ToyTrainer.eval_calls = []
    ToyTrainer(toy_cfg(out, **{"SOLVER.MAX_ITER": 4})).train()
    t = _WiderToy(toy_cfg(out, **{"SOLVER.MAX_ITER": 8}))
    with pytest.raises(IncompatibleCheckpointError) as e:
        t.resume_or_load(resume=True)
    msg = str(e.value)
    assert "model_0000003.pth" in msg and "other shape in the file, skipped (" in msg
    assert "backbone.0.weight (file (16, 6), model (32, 6))" in msg and "MODEL.ALLOW_PARTIAL_WEIGHTS" in msg


def test_partial_model_weights_for_training_is_loud(tmp_path, caplog):
    out = str(tmp_path / "run")
    ToyTrainer.eval_calls = []
    ToyTrainer(toy_cfg(out, **{"SOLVER.MAX_ITER": 4})).train()
    t = _WiderToy(toy_cfg(str(tmp_path / "ft"), **{"MODEL.WEIGHTS": os.path.join(out, "model_final.pth")}))
    lg = logging.getLogger("skinformer.checkpoint.checkpointer")
    lg.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.WARNING):
            t.resume_or_load(resume=False)  # fine-tuning: allowed
    finally:
        lg.removeHandler(caplog.handler)
    assert "does not fit the model" in caplog.text and "Partial loading is allowed here" in caplog.text


def test_stale_temporary_files_cleaned_on_start(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    stale = out / ".model_0000003.pth.k2j4h1x9.tmp"  # what a kill during a save leaves
    stale.write_bytes(b"partial")
    keep = out / "notes.tmp"
    keep.write_text("not ours")
    t = ToyTrainer(toy_cfg(str(out)))
    t.resume_or_load(resume=True)
    assert not stale.exists() and keep.exists()
