"""Printing, flattening and checking evaluation results (``{task: {metric: float}}``)."""
import logging
import math
from collections.abc import Mapping
from typing import Dict

__all__ = ["print_csv_format", "flatten_results_dict", "verify_results"]

logger = logging.getLogger(__name__)


def print_csv_format(results: Mapping) -> None:
    """Log each task's metrics as two comma-separated lines (names, values) for copy-pasting.

    Keys starting with ``_`` (private extras) are skipped.
    """
    if not isinstance(results, Mapping):
        raise TypeError(f"results must be a dict of {{task: {{metric: value}}}}, got {type(results).__name__}")
    for task, res in results.items():
        if str(task).startswith("_"):
            continue
        if isinstance(res, Mapping):
            names = [k for k in res.keys() if not str(k).startswith("_")]
            logger.info(f"copypaste: Task: {task}")
            logger.info("copypaste: " + ",".join(str(k) for k in names))
            logger.info("copypaste: " + ",".join(f"{float(res[k]):.4f}" for k in names))
        else:
            logger.info(f"copypaste: {task}={res}")


def flatten_results_dict(results: Mapping) -> Dict[str, float]:
    """``{"a": {"b": 1.0}}`` -> ``{"a/b": 1.0}`` (nested to any depth)."""
    out = {}
    for k, v in results.items():
        if isinstance(v, Mapping):
            for kk, vv in flatten_results_dict(v).items():
                out[f"{k}/{kk}"] = vv
        else:
            out[k] = v
    return out


def verify_results(cfg, results: Mapping) -> bool:
    """Check ``results`` against ``cfg.TEST.EXPECTED_RESULTS`` = ``[[task, metric, expected, tolerance], ...]``.

    Returns True when every listed metric is within tolerance (or nothing is listed); logs every
    mismatch (a missing task/metric or a NaN counts as a mismatch). Callers decide whether to exit.
    """
    expected = cfg.TEST.EXPECTED_RESULTS
    if not len(expected):
        return True
    ok = True
    for entry in expected:
        if len(entry) != 4:
            raise ValueError(f"TEST.EXPECTED_RESULTS entries must be [task, metric, expected, tolerance]; got {entry!r}")
        task, metric, want, tol = entry
        actual = results.get(task, {}).get(metric) if isinstance(results.get(task), Mapping) else None
        if actual is None:
            logger.error(f"Result verification: {task}/{metric} is missing from the results")
            ok = False
            continue
        diff = abs(float(actual) - float(want))
        if not math.isfinite(float(actual)) or diff > float(tol):
            logger.error(f"Result verification failed: {task}/{metric} = {actual}, expected {want} ± {tol}")
            ok = False
    if ok:
        logger.info("Results verification passed.")
    else:
        logger.error("Results verification failed; full results: " + str(dict(flatten_results_dict(results))))
    return ok
