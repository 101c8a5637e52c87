"""tools/train_net.py end to end (subprocess): --help, training with the original implementation's command shape,
--resume continuing, --eval-only; output folder contents."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SCRIPT = os.path.join(ROOT, "tools", "train_net.py")
CONFIG = os.path.join(ROOT, "configs", "quickstart", "per_pixel_r18_synthetic.yaml")


def _run(args, env_extra=None, timeout=900):
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run([sys.executable, SCRIPT, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_help():
    r = _run(["--help"], timeout=120)
    assert r.returncode == 0, r.stderr
    for flag in ("--config-file", "--resume", "--eval-only", "--num-gpus", "--num-machines", "--machine-rank",
                 "--dist-url", "opts"):
        assert flag in r.stdout, flag


def test_unknown_config_key_fails_clearly(tmp_path):
    r = _run(["--config-file", CONFIG, "SOLVER.MAX_ITERS", "3", "OUTPUT_DIR", str(tmp_path)], timeout=120)
    assert r.returncode != 0 and "SOLVER.MAX_ITER'" in r.stderr


# small and fast: tiny crops, the smallest timm ResNet, few iterations
_FAST = ["MODEL.TIMM.NAME", "resnet10t", "MODEL.SEM_SEG_HEAD.CONVS_DIM", "16", "DATALOADER.NUM_WORKERS", "0",
         "INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.CROP.SIZE", "(64, 64)", "INPUT.MIN_SIZE_TEST", "64",
         "SOLVER.WARMUP_ITERS", "1", "SOLVER.CHECKPOINT_PERIOD", "2", "LOG_PERIOD", "1", "TEST.NUM_VIS", "2",
         "DATASETS.VALIDATE_FIRST_N", "2"]


@pytest.mark.slow
def test_train_resume_and_eval_only(tmp_path):
    out = tmp_path / "x"
    env = {"SKINFORMER_CACHE": str(tmp_path / "cache")}
    # the original implementation's command shape
    cmd = ["--config-file", CONFIG, "--num-gpus", "1", "--resume", "DATASETS.TRAIN", '("synthetic_lesion_train",)',
           "SOLVER.IMS_PER_BATCH", "2", "SOLVER.BASE_LR", "0.0001", "SOLVER.MAX_ITER", "3", "OUTPUT_DIR", str(out),
           *_FAST]
    r = _run(cmd, env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    for f in ("config.yaml", "metrics.json", "model_final.pth", "last_checkpoint", "log.txt"):
        assert (out / f).exists(), f
    assert len(list((out / "vis").glob("*.png"))) == 2
    lines = [json.loads(l) for l in (out / "metrics.json").read_text().splitlines()]
    assert [l["iteration"] for l in lines] == [0, 1, 2, 3]
    assert "isic_task1/jaccard" in lines[-1]  # final evaluation in metrics.json
    assert "Final metrics" in (out / "log.txt").read_text()

    # --resume with a longer schedule continues at iteration 3
    r = _run([a if a != "3" else "5" for a in cmd], env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    log = (out / "log.txt").read_text()
    assert "Resumed at iteration 3" in log and "Starting training from iteration 3" in log

    # --eval-only with MODEL.WEIGHTS
    r = _run(["--config-file", CONFIG, "--eval-only", "MODEL.WEIGHTS", str(out / "model_final.pth"),
              "OUTPUT_DIR", str(tmp_path / "ev"), *_FAST], env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "isic_task1" in (tmp_path / "ev" / "log.txt").read_text()

    # MODEL.WEIGHTS pointing nowhere: the error names the key and the path
    r = _run(["--config-file", CONFIG, "--eval-only", "MODEL.WEIGHTS", str(tmp_path / "nope.pth"),
              "OUTPUT_DIR", str(tmp_path / "ev2"), *_FAST], env)
    assert r.returncode != 0 and "MODEL.WEIGHTS" in r.stderr and "nope.pth" in r.stderr
