"""Epoch budgets, per-epoch LR steps, RMSprop and a new-layer init on the synthetic lesion data
with the real DefaultTrainer (a few iterations on CPU)."""
import json
import logging

import pytest

from skinformer.engine import DefaultTrainer


def test_epochs_per_epoch_schedule_rmsprop_init(tiny_synthetic_cfg, tmp_path, caplog):
    cfg = tiny_synthetic_cfg
    # 64 synthetic training images / (16 per batch x 2 accumulated) = 2 iterations per epoch
    cfg.merge_from_list(["SOLVER.IMS_PER_BATCH", "16", "SOLVER.ACCUMULATE_STEPS", "2", "SOLVER.MAX_EPOCHS", "2",
                         "SOLVER.CHECKPOINT_PERIOD_EPOCHS", "1", "TEST.EVAL_PERIOD_EPOCHS", "1",
                         "SOLVER.OPTIMIZER", "RMSPROP", "SOLVER.LR_SCHEDULER_NAME", "WarmupStepLR",
                         "SOLVER.SCHEDULER_STEP_UNIT", "epoch", "SOLVER.STEP_SIZE", "1", "SOLVER.GAMMA", "0.5",
                         "MODEL.INIT.METHOD", "xavier", "INPUT.CROP.SIZE", "(32, 32)"])
    with caplog.at_level(logging.INFO, logger="skinformer"):
        trainer = DefaultTrainer(cfg)
        assert trainer.max_iter == 4 and trainer.cfg.SOLVER.CHECKPOINT_PERIOD == 2 and trainer.cfg.TEST.EVAL_PERIOD == 2
        trainer.train()
    assert "1 epoch = 2 iterations" in caplog.text and "stepped per epoch (2 iterations)" in caplog.text
    assert "Initialised" in caplog.text and "xavier" in caplog.text
    assert type(trainer.optimizer).__name__.startswith("RMSprop")
    out = tmp_path / "out"
    lines = [json.loads(l) for l in (out / "metrics.json").read_text().splitlines()]
    lrs = [l["lr"] for l in lines if "lr" in l]
    base = cfg.SOLVER.BASE_LR
    assert lrs == pytest.approx([base, base, base / 2, base / 2])  # halved once per epoch
    assert any("isic_task1/jaccard" in l and l["iteration"] == 1 for l in lines)  # evaluated after epoch 1
    assert (out / "model_0000001.pth").exists() and (out / "model_final.pth").exists()


def test_plateau_and_early_stopping_on_synthetic(tiny_synthetic_cfg, tmp_path):
    """After the first, every evaluation counts as "no improvement" (huge MIN_DELTA / THRESHOLD):
    the lr halves after each one and training stops after two of them, keeping model_best."""
    cfg = tiny_synthetic_cfg
    cfg.merge_from_list(["SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", "20", "TEST.EVAL_PERIOD", "1",
                         "SOLVER.CHECKPOINT_PERIOD", "100", "SOLVER.LR_SCHEDULER_NAME", "ReduceLROnPlateau",
                         "SOLVER.PLATEAU.METRIC", "isic_task1/jaccard", "SOLVER.PLATEAU.PATIENCE", "0",
                         "SOLVER.PLATEAU.FACTOR", "0.5", "SOLVER.PLATEAU.THRESHOLD", "1e6",
                         "SOLVER.EARLY_STOPPING.PATIENCE", "2", "SOLVER.EARLY_STOPPING.METRIC", "isic_task1/jaccard",
                         "SOLVER.EARLY_STOPPING.MIN_DELTA", "10.0", "DATASETS.TEST", '("synthetic_lesion_val",)'])
    trainer = DefaultTrainer(cfg)
    trainer.train()
    out = tmp_path / "out"
    lines = [json.loads(l) for l in (out / "metrics.json").read_text().splitlines()]
    lrs = [l["lr"] for l in lines if "lr" in l]
    base = cfg.SOLVER.BASE_LR
    # eval 0 sets the best; eval 1 is "bad" (> patience 0): halved from iteration 2; eval 2 is the
    # second bad one: early stop after iteration 2
    assert lrs == pytest.approx([base, base, base / 2])
    assert (out / "model_best.pth").exists() and (out / "model_final.pth").exists()
