"""Logging setup (per rank, console + file) and small table formatting."""
import functools
import logging
import os
import sys
from typing import Dict, Optional

from tabulate import tabulate

__all__ = ["setup_logger", "create_small_table", "log_first_n"]


@functools.lru_cache()
def setup_logger(output: Optional[str] = None, distributed_rank: int = 0, name: str = "skinformer",
                 abbrev_name: Optional[str] = None) -> logging.Logger:
    """Configure ``name`` logger: INFO to stdout on rank 0, everything to ``output`` (a dir or .txt/.log file)."""
    logger = logging.getLogger(name)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    fmt = logging.Formatter("[%(asctime)s %(name)s]: %(message)s", datefmt="%m/%d %H:%M:%S")
    if distributed_rank == 0:
        ch = logging.StreamHandler(stream=sys.stdout)
        ch.setLevel(logging.INFO)
        ch.setFormatter(fmt)
        logger.addHandler(ch)
    if output is not None:
        filename = output if output.endswith((".txt", ".log")) else os.path.join(output, "log.txt")
        if distributed_rank > 0:
            filename = f"{filename}.rank{distributed_rank}"
        os.makedirs(os.path.dirname(os.path.abspath(filename)), exist_ok=True)
        fh = logging.FileHandler(filename, mode="a")
        fh.setLevel(logging.DEBUG)
        fh.setFormatter(fmt)
        logger.addHandler(fh)
    return logger


def create_small_table(small_dict: Dict) -> str:
    """A one-row table of ``small_dict`` (floats with 4 decimals)."""
    keys, values = tuple(zip(*small_dict.items())) if small_dict else ((), ())
    values = [f"{v:.4f}" if isinstance(v, float) else v for v in values]
    return tabulate([values], headers=keys, tablefmt="pipe", floatfmt=".4f", stralign="center", numalign="center")


_LOG_COUNTER: Dict = {}


def log_first_n(lvl: int, msg: str, n: int = 1, name: str = "skinformer", key: str = "msg") -> None:
    """Log ``msg`` only the first ``n`` times it is seen (keyed by message text)."""
    k = (name, msg) if key == "msg" else (name, key)
    _LOG_COUNTER[k] = _LOG_COUNTER.get(k, 0) + 1
    if _LOG_COUNTER[k] <= n:
        logging.getLogger(name).log(lvl, msg)
