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
