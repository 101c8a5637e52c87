import logging

import pytest


@pytest.fixture(autouse=True)
def _propagate_skinformer_logs():
    """``setup_logger`` (called by ``default_setup`` in engine tests) stops the "skinformer" logger
    from propagating, which would hide later tests' log records from ``caplog``."""
    loggers = [logging.getLogger(name) for name in ("skinformer", "fvcore")]
    saved = [lg.propagate for lg in loggers]
    for lg in loggers:
        lg.propagate = True
    yield
    for lg, p in zip(loggers, saved):
        lg.propagate = p


@pytest.fixture
def tiny_synthetic_cfg(tmp_path, monkeypatch):
    """The quick-start per-pixel config shrunk to seconds on CPU: the synthetic lesion data
    generated under ``tmp_path``, ResNet-10t, 64 px crops, no warmup, OUTPUT_DIR ``tmp_path/out``."""
    from skinformer.config import get_cfg
    from skinformer.data.catalog import reset_lazy_resolution

    monkeypatch.setenv("SKINFORMER_CACHE", str(tmp_path / "cache"))
    reset_lazy_resolution()
    cfg = get_cfg()
    cfg.merge_from_file("configs/quickstart/per_pixel_r18_synthetic.yaml")
    cfg.merge_from_list(["MODEL.TIMM.NAME", "resnet10t", "MODEL.SEM_SEG_HEAD.CONVS_DIM", "16",
                         "DATALOADER.NUM_WORKERS", "0", "INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.CROP.SIZE", "(64, 64)",
                         "INPUT.MIN_SIZE_TEST", "64", "SOLVER.WARMUP_ITERS", "0", "LOG_PERIOD", "1",
                         "TEST.NUM_VIS", "0", "DATASETS.VALIDATE_FIRST_N", "1", "OUTPUT_DIR", str(tmp_path / "out")])
    return cfg
