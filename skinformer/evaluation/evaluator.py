"""The evaluator protocol and the inference loop that drives it.

``inference_on_dataset`` runs a model over a test loader and feeds every batch to an evaluator.
It reports where the time goes -- waiting for data, the model, the evaluator's ``process`` and the
final ``evaluate`` -- so a slow evaluation is visible instead of looking like a hung job
(detectron2 users' most common evaluation complaint). The split is logged and, if the caller
passes a ``timings`` dict, written into it (results stay a clean ``{task: {metric: float}}``).
"""
import datetime
import logging
import sys
import time
from collections import OrderedDict
from contextlib import ExitStack, contextmanager
from typing import Dict, Iterable, List, Optional, Sequence, Union

import torch
from torch import nn
from tqdm import tqdm

from skinformer.utils import comm

__all__ = [
    "DatasetEvaluator", "DatasetEvaluators", "inference_on_dataset", "inference_context",
    "all_reduce_statistics",
]

logger = logging.getLogger(__name__)


class DatasetEvaluator:
    """Base class of dataset evaluators.

    ``reset()`` before a pass, ``process(inputs, outputs)`` for every batch (``inputs``: the list
    of dicts given to the model, ``outputs``: the list it returned), ``evaluate()`` at the end.
    ``evaluate`` returns ``{"<task>": {"<metric>": float}}`` on the main process and ``{}`` (or
    ``None``) on the others; evaluators reduce their statistics across processes themselves.
    """

    def reset(self) -> None:
        """Clear the accumulated state before a new evaluation pass."""
        pass

    def process(self, inputs: List[dict], outputs: List[dict]) -> None:
        """Accumulate one batch: ``inputs`` are the model's input dicts, ``outputs`` the dicts it returned."""
        pass

    def evaluate(self) -> Optional[Dict[str, Dict[str, float]]]:
        """Return ``{task: {metric: value}}`` over the processed batches (``{}`` or ``None`` off the main process)."""
        return {}


class DatasetEvaluators(DatasetEvaluator):
    """Fan out to several evaluators and merge their results (task names must be distinct)."""

    def __init__(self, evaluators: Sequence[DatasetEvaluator]):
        super().__init__()
        self._evaluators = list(evaluators)

    def reset(self) -> None:
        """Reset every evaluator."""
        for e in self._evaluators:
            e.reset()

    def process(self, inputs, outputs) -> None:
        """Pass the batch to every evaluator."""
        for e in self._evaluators:
            e.process(inputs, outputs)

    def evaluate(self):
        """Run every evaluator's ``evaluate`` and merge the results (main process; ``{}`` elsewhere).

        Raises ``KeyError`` if two evaluators report the same task.
        """
        results = OrderedDict()
        for e in self._evaluators:
            res = e.evaluate()
            if comm.is_main_process() and res:
                for k, v in res.items():
                    if k in results:
                        raise KeyError(f"Two evaluators ({type(e).__name__} and an earlier one) both report task '{k}'")
                    results[k] = v
        return results


def all_reduce_statistics(tensor: torch.Tensor, device: Optional[Union[str, torch.device]] = None) -> torch.Tensor:
    """Sum a small statistics tensor over all processes and return the sum (a new tensor).

    ``device`` is where the reduction runs (the backend's device: the CUDA device for NCCL,
    the CPU for gloo); evaluators pass ``cfg.MODEL.DEVICE``. Without a process group, or with one
    process, the tensor itself is returned.
    """
    if comm.get_world_size() == 1:
        return tensor
    out = tensor.detach().to(device if device is not None else tensor.device).clone()
    comm.all_reduce(out)
    return out


@contextmanager
def inference_context(model: nn.Module):
    """Put ``model`` in eval mode for the block and restore its previous training mode after."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _model_device(model: nn.Module) -> Optional[torch.device]:
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return None


def _sync(device: Optional[torch.device]) -> None:
    # CUDA kernels run asynchronously: without a sync the model time would be charged to whatever
    # waits for the results next (usually the evaluator).
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


def _num_images(batch) -> int:
    return len(batch) if isinstance(batch, (list, tuple)) else 1


def inference_on_dataset(model: nn.Module, data_loader: Iterable, evaluator: Optional[Union[DatasetEvaluator, Sequence[DatasetEvaluator]]],
                         *, num_warmup: int = 5, log_period_s: float = 10.0, timings: Optional[dict] = None,
                         progress: Optional[bool] = None):
    """Run ``model`` on every batch of ``data_loader`` and evaluate the outputs.

    Args:
        model: called as ``model(batch)`` on each list of dicts; put in eval mode under
            ``torch.no_grad()`` for the duration and restored to its training mode afterwards.
        data_loader: iterable of batches (lists of dataset dicts); its ``len`` is used for the ETA.
        evaluator: a :class:`DatasetEvaluator`, a list of them, or None (just run the model).
        num_warmup: the first ``min(num_warmup, len-1)`` iterations are left out of the per-image
            timings (CUDA/cuDNN autotuning, allocator warm-up, first-batch worker start-up).
        log_period_s: log a progress line with ETA and the time split at most this often (also
            when stdout is not a terminal, where the tqdm bar is disabled).
        timings: optional dict filled with the timing split: ``num_images``, ``num_timed_images``
            (after warm-up), ``total_s`` (wall time of the loop), ``data_s``, ``model_s``,
            ``evaluator_s`` (``process`` calls), ``evaluate_s`` (the final ``evaluate``), and per
            image seconds ``data_s_per_image``, ``model_s_per_image``, ``evaluator_s_per_image``
            over the timed images. Times are CUDA-synchronised when the model is on CUDA.
        progress: force the tqdm progress bar on/off (default: on when stderr is a terminal).

    Returns:
        The evaluator's results (``{}`` on non-main processes or without an evaluator).
    """
    num_devices = comm.get_world_size()
    if evaluator is None:
        evaluator = DatasetEvaluator()
    elif isinstance(evaluator, (list, tuple)):
        evaluator = DatasetEvaluators(evaluator)
    try:
        total = len(data_loader)
    except TypeError:
        total = None
    logger.info(f"Start inference on {total if total is not None else 'an unknown number of'} batches"
                f" ({num_devices} process(es))")
    device = _model_device(model)
    num_warmup = min(num_warmup, total - 1) if total else num_warmup
    num_warmup = max(num_warmup, 0)
    evaluator.reset()

    if progress is None:
        progress = comm.is_main_process() and sys.stderr.isatty()
    bar = tqdm(total=total, desc="inference", unit="batch", disable=not progress, dynamic_ncols=True)
    sums = {"data": 0.0, "model": 0.0, "evaluator": 0.0}
    num_images = num_timed_images = 0
    start_time = time.perf_counter()
    timed_start = start_time
    last_log = start_time
    idx = -1
    with ExitStack() as stack:
        stack.enter_context(inference_context(model))
        stack.enter_context(torch.no_grad())
        t_data_start = time.perf_counter()
        for idx, inputs in enumerate(data_loader):
            t_data = time.perf_counter() - t_data_start
            if idx == num_warmup:
                # restart the clocks: warm-up iterations are excluded from the per-image figures
                sums = {k: 0.0 for k in sums}
                num_timed_images = 0
                timed_start = time.perf_counter() - t_data
            t0 = time.perf_counter()
            outputs = model(inputs)
            _sync(device)
            t1 = time.perf_counter()
            evaluator.process(inputs, outputs)
            _sync(device)
            t2 = time.perf_counter()

            n = _num_images(inputs)
            num_images += n
            num_timed_images += n
            sums["data"] += t_data
            sums["model"] += t1 - t0
            sums["evaluator"] += t2 - t1
            bar.update(1)
            now = time.perf_counter()
            if now - last_log >= log_period_s and comm.is_main_process():
                last_log = now
                done = idx + 1
                eta = ""
                if total:
                    per_batch = (now - start_time) / done
                    eta = f" ETA={datetime.timedelta(seconds=int(per_batch * (total - done)))}."
                per = max(num_timed_images, 1)
                logger.info(
                    f"Inference done {done}/{total if total else '?'}. Data {sums['data'] / per:.4f} s/img. "
                    f"Model {sums['model'] / per:.4f} s/img. Eval {sums['evaluator'] / per:.4f} s/img.{eta}"
                )
            t_data_start = time.perf_counter()
    bar.close()
    loop_end = time.perf_counter()
    t3 = time.perf_counter()
    results = evaluator.evaluate()
    evaluate_s = time.perf_counter() - t3
    if results is None:  # non-main processes may return None (detectron2 convention)
        results = {}

    per = max(num_timed_images, 1)
    split = {
        "num_images": num_images,
        # fewer batches than warm-up iterations: nothing was reset, all images are in the sums
        "num_timed_images": num_timed_images,
        "total_s": loop_end - start_time,
        "data_s": sums["data"],
        "model_s": sums["model"],
        "evaluator_s": sums["evaluator"],
        "evaluate_s": evaluate_s,
        "data_s_per_image": sums["data"] / per,
        "model_s_per_image": sums["model"] / per,
        "evaluator_s_per_image": sums["evaluator"] / per,
    }
    timed_wall = loop_end - timed_start
    logger.info(
        f"Total inference time: {datetime.timedelta(seconds=int(loop_end - start_time))} for {num_images} images "
        f"({timed_wall / per:.6f} s/img over the {per} images after warm-up, per device, on {num_devices} devices)"
    )
    logger.info(
        f"Time split per image: data {split['data_s_per_image']:.6f} s, model {split['model_s_per_image']:.6f} s, "
        f"evaluator.process {split['evaluator_s_per_image']:.6f} s; final evaluate() {evaluate_s:.3f} s"
    )
    if timings is not None:
        timings.update(split)
    return results
