"""Hooks used by :class:`DefaultTrainer` (detectron2's set, plus the best-checkpoint hook).

Default order: IterationTimer -> LRScheduler -> PeriodicCheckpointer -> EvalHook ->
BestCheckpointer -> PeriodicWriter. Checkpointing comes before evaluation so a crash in
evaluation still leaves a checkpoint; the writer comes last so it prints evaluation results.
"""
import contextlib
import datetime
import logging
import math
import time
from typing import Any, Callable, Dict, Iterator, List, Optional

import torch
from fvcore.common.checkpoint import PeriodicCheckpointer as _FvPeriodicCheckpointer
from fvcore.common.timer import Timer

from skinformer.utils import comm
from skinformer.utils.events import EventWriter

from .train_loop import HookBase, _unwrap, rng_preserved

__all__ = [
    "CallbackHook",
    "IterationTimer",
    "LRScheduler",
    "PeriodicCheckpointer",
    "EvalHook",
    "BestCheckpointer",
    "PeriodicWriter",
    "ReduceLROnPlateau",
    "EarlyStopping",
    "ModelEMA",
    "build_model_ema",
    "averaged_weights",
    "flatten_results_dict",
]

logger = logging.getLogger(__name__)


class CallbackHook(HookBase):
    """Run user functions ``f(trainer)`` at the hook points given."""

    def __init__(self, *, before_train=None, after_train=None, before_step=None, after_backward=None,
                 after_step=None):
        self._before_train = before_train
        self._after_train = after_train
        self._before_step = before_step
        self._after_backward = after_backward
        self._after_step = after_step

    def before_train(self):
        """Call the ``before_train`` callback (if given) with the trainer."""
        if self._before_train:
            self._before_train(self.trainer)

    def after_train(self):
        """Call the ``after_train`` callback (if given), then drop all callbacks."""
        if self._after_train:
            self._after_train(self.trainer)
        # drop the closures: they may hold references to the trainer
        self._before_train = self._after_train = self._before_step = None
        self._after_backward = self._after_step = None

    def before_step(self):
        """Call the ``before_step`` callback (if given) with the trainer."""
        if self._before_step:
            self._before_step(self.trainer)

    def after_backward(self):
        """Call the ``after_backward`` callback (if given) with the trainer."""
        if self._after_backward:
            self._after_backward(self.trainer)

    def after_step(self):
        """Call the ``after_step`` callback (if given) with the trainer."""
        if self._after_step:
            self._after_step(self.trainer)


class IterationTimer(HookBase):
    """Put the time of each iteration (``time``) in the storage and log the total at the end.

    The first ``warmup_iter`` iterations are excluded from the summary (they include
    start-up costs such as worker start and cuDNN autotuning).
    """

    def __init__(self, warmup_iter: int = 3):
        self._warmup_iter = warmup_iter
        self._step_timer = Timer()
        self._start_time = time.perf_counter()
        self._total_timer = Timer()

    def before_train(self):
        """Start the overall clock and reset the (paused) timer of time spent outside hooks."""
        self._start_time = time.perf_counter()
        self._total_timer.reset()
        self._total_timer.pause()

    def after_train(self):
        """Log the speed of the post-warm-up iterations and the total training time (and time in hooks)."""
        total_time = time.perf_counter() - self._start_time
        total_time_minus_hooks = self._total_timer.seconds()
        hook_time = total_time - total_time_minus_hooks
        num_iter = min(self.trainer.iter, self.trainer.max_iter) - self.trainer.start_iter - self._warmup_iter
        if num_iter > 0 and total_time_minus_hooks > 0:
            logger.info(
                "Overall training speed: %d iterations in %s (%.4f s / it)",
                num_iter, str(datetime.timedelta(seconds=int(total_time_minus_hooks))),
                total_time_minus_hooks / num_iter,
            )
        logger.info("Total training time: %s (%s on hooks)",
                    str(datetime.timedelta(seconds=int(total_time))),
                    str(datetime.timedelta(seconds=int(hook_time))))

    def before_step(self):
        """Restart the per-iteration timer and resume the timer of time outside hooks."""
        self._step_timer.reset()
        self._total_timer.resume()

    def after_step(self):
        """Put this iteration's duration (seconds) as ``time`` in the storage once past warm-up.

        During warm-up the overall clocks are restarted instead, so warm-up iterations are left out of the summary.
        """
        iter_done = self.trainer.storage.iter - self.trainer.start_iter + 1
        if iter_done >= self._warmup_iter:
            self.trainer.storage.put_scalars(time=self._step_timer.seconds())
        else:
            self._start_time = time.perf_counter()
            self._total_timer.reset()
        self._total_timer.pause()


class LRScheduler(HookBase):
    """Log the learning rate of the step just taken (``lr``) and step the scheduler."""

    def __init__(self, optimizer: Optional[torch.optim.Optimizer] = None, scheduler=None):
        # both default to the trainer's own at before_train
        self._optimizer = optimizer
        self._scheduler = scheduler
        self._best_param_group_id = 0

    def before_train(self):
        """Take the trainer's optimizer/scheduler where none was given and pick the param group to log."""
        self._optimizer = self._optimizer or self.trainer.optimizer
        if self._scheduler is None:
            self._scheduler = self.trainer.scheduler
        self._best_param_group_id = self.get_best_param_group_id(self._optimizer)

    @staticmethod
    def get_best_param_group_id(optimizer: torch.optim.Optimizer) -> int:
        """The group that best represents "the" lr: the largest lr, then the most parameters."""
        largest = max(len(g["params"]) for g in optimizer.param_groups)
        if largest == 1:
            # one param per group: the most common lr is the base lr
            lr_count: Dict[float, int] = {}
            for g in optimizer.param_groups:
                lr_count[g["lr"]] = lr_count.get(g["lr"], 0) + 1
            lr = max(lr_count, key=lr_count.get)
            return next(i for i, g in enumerate(optimizer.param_groups) if g["lr"] == lr)
        best = max(range(len(optimizer.param_groups)),
                   key=lambda i: (optimizer.param_groups[i]["lr"], len(optimizer.param_groups[i]["params"])))
        return best

    def after_step(self):
        """Put the lr used by this step (of the representative group) as ``lr``, then step the scheduler."""
        lr = self._optimizer.param_groups[self._best_param_group_id]["lr"]
        self.trainer.storage.put_scalar("lr", lr, smoothing_hint=False)
        self.scheduler.step()

    @property
    def scheduler(self):
        """The scheduler given at construction, else the trainer's ``scheduler``."""
        return self._scheduler or self.trainer.scheduler

    def state_dict(self):
        """Return the scheduler's ``state_dict()`` if it is a torch ``LRScheduler``, else ``{}``."""
        if isinstance(self.scheduler, torch.optim.lr_scheduler.LRScheduler):
            return self.scheduler.state_dict()
        return {}

    def load_state_dict(self, state_dict):
        """Restore the scheduler's state (its last iteration, …) if it is a torch ``LRScheduler``."""
        if isinstance(self.scheduler, torch.optim.lr_scheduler.LRScheduler):
            logger.info("Restored LR scheduler state (last iteration %s)", state_dict.get("last_epoch"))
            self.scheduler.load_state_dict(state_dict)


class PeriodicCheckpointer(_FvPeriodicCheckpointer, HookBase):
    """Save ``model_{iter:07d}.pth`` (everything ``--resume`` needs) every ``period``
    iterations and at the last iteration, and ``model_final.pth`` with the model weights only
    after the last iteration: the file users keep is not a second copy of the optimizer state
    (with :class:`ModelEMA`, the averaged weights).
    Register it on the main process only (checkpointers of other ranks do not write anyway).
    ``max_iter`` is read from the trainer.
    """

    def before_train(self):
        """Read ``max_iter`` from the trainer."""
        self.max_iter = self.trainer.max_iter

    def step(self, iteration: int, **kwargs: Any) -> None:
        """Save the checkpoints due after iteration ``iteration`` (0-based, just finished).

        A full ``{file_prefix}_{iteration:07d}`` every ``period`` iterations and at the last one (keeping the newest
        ``max_to_keep``); at the last one also the weights-only ``{file_prefix}_final``. ``kwargs`` go into the files.
        """
        iteration = int(iteration)
        state = {"iteration": iteration, **kwargs}
        final = self.max_iter is not None and iteration >= self.max_iter - 1
        if (iteration + 1) % self.period == 0 or final:
            # the final full checkpoint lets --resume continue with a longer schedule
            self.checkpointer.save(f"{self.file_prefix}_{iteration:07d}", **state)
            if self.max_to_keep is not None:
                self.recent_checkpoints.append(self.checkpointer.get_checkpoint_file())
                if len(self.recent_checkpoints) > self.max_to_keep:
                    old = self.recent_checkpoints.pop(0)
                    if self.path_manager.exists(old):
                        self.path_manager.rm(old)
        if final:
            with averaged_weights(getattr(self, "trainer", None)):
                self.checkpointer.save_weights(f"{self.file_prefix}_final", **state)

    def after_step(self):
        """Call :meth:`step` with the iteration just finished."""
        # no checkpoint is written for a step that raised (after_step does not run then)
        self.step(self.trainer.iter)


def flatten_results_dict(results: Dict[str, Any]) -> Dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a/b": 1}`` (evaluation results into flat scalar names)."""
    out: Dict[str, Any] = {}
    for k, v in results.items():
        if isinstance(v, dict):
            for kk, vv in flatten_results_dict(v).items():
                out[f"{k}/{kk}"] = vv
        else:
            out[k] = v
    return out


class EvalHook(HookBase):
    """Run ``eval_function()`` every ``eval_period`` iterations and after training.

    Periodic evaluations before iteration ``eval_start_iter`` are skipped (SiMaskFormer's
    ``TEST.EVAL_START_ITER``); the one at ``max_iter`` is left to the final evaluation, which
    runs after a successful training (``eval_after_train``). Results (a nested dict of floats)
    are flattened to ``task/metric`` scalars in the storage, so they reach ``metrics.json``.
    Global RNG states are preserved around the evaluation so a resumed run stays exact.
    """

    def __init__(self, eval_period: int, eval_function: Callable[[], Dict], eval_start_iter: int = 0,
                 eval_after_train: bool = True):
        self._period = int(eval_period)
        self._func = eval_function
        self._eval_start_iter = int(eval_start_iter)
        self._eval_after_train = eval_after_train
        self.num_evals = 0  # for tests and logging

    def _do_eval(self):
        with rng_preserved():
            results = self._func()
        self.num_evals += 1
        if results:
            if not isinstance(results, dict):
                raise TypeError(f"Eval function must return a dict, got {type(results).__name__}: {results!r}")
            flattened = flatten_results_dict(results)
            for k, v in flattened.items():
                try:
                    v = float(v)
                except Exception as e:
                    raise ValueError(
                        f"[EvalHook] eval_function should return a nested dict of floats; got '{k}: {v!r}'"
                    ) from e
                self.trainer.storage.put_scalar(k, v, smoothing_hint=False)
        # evaluation can take different time on each process
        comm.synchronize()
        return results

    def after_step(self):
        """Evaluate after every ``eval_period``-th iteration from ``eval_start_iter`` on, except the last one."""
        next_iter = self.trainer.iter + 1
        if (
            self._period > 0
            and next_iter % self._period == 0
            and next_iter != self.trainer.max_iter  # the final evaluation covers it
            and next_iter >= self._eval_start_iter
        ):
            self._do_eval()

    def after_train(self):
        """Run the final evaluation if training succeeded and ``eval_after_train``; then release ``eval_function``."""
        # only after a successful run (iter was bumped to max_iter)
        if self._eval_after_train and self.trainer.iter >= self.trainer.max_iter:
            self._do_eval()
        # free the closure (it may reference the trainer and loaders)
        del self._func
        self._func = None


_BEST_MODES = {"max": lambda new, best: new > best, "min": lambda new, best: new < best}


class BestCheckpointer(HookBase):
    """Save ``model_best.pth`` whenever ``val_metric`` (a flat storage key such as
    ``"sem_seg/mIoU"``) improves. Must be registered after :class:`EvalHook`. NaN values are
    ignored (a diverged evaluation never becomes "best"). ``last_checkpoint`` is not changed.
    With :class:`ModelEMA` its model weights are the average (what the evaluation measured).
    """

    def __init__(self, eval_period: int, checkpointer, val_metric: str, mode: str = "max",
                 file_prefix: str = "model_best"):
        if mode not in _BEST_MODES:
            raise ValueError(f"TEST.BEST_CHECKPOINT_MODE must be one of {sorted(_BEST_MODES)}, got '{mode}'")
        self._period = int(eval_period)
        self._checkpointer = checkpointer
        self._val_metric = val_metric
        self._mode = mode
        self._compare = _BEST_MODES[mode]
        self._file_prefix = file_prefix
        self.best_metric: Optional[float] = None
        self.best_iter: Optional[int] = None

    def _update_best(self, val: float, iteration: int) -> bool:
        if math.isnan(val) or math.isinf(val):
            return False
        self.best_metric, self.best_iter = float(val), int(iteration)
        return True

    def _best_checking(self) -> None:
        latest = self.trainer.storage.latest().get(self._val_metric)
        if latest is None:
            logger.warning(
                "Metric '%s' (TEST.BEST_CHECKPOINT_METRIC) is not among the evaluation results; "
                "available: %s. Not saving a best checkpoint.",
                self._val_metric, sorted(self.trainer.storage.latest().keys()),
            )
            return
        value, metric_iter = latest
        if math.isnan(value):
            logger.warning("%s is NaN at iteration %d; ignored for the best checkpoint", self._val_metric, metric_iter)
            return
        if self.best_metric is None or self._compare(value, self.best_metric):
            previous = self.best_metric
            if self._update_best(value, metric_iter):
                with averaged_weights(self.trainer):  # the weights that were evaluated
                    self._checkpointer.save(self._file_prefix, iteration=metric_iter, tag_last_checkpoint=False)
                logger.info("Saved best model: %s = %.5f at iteration %d (previous best: %s)",
                            self._val_metric, value, metric_iter, previous)
        else:
            logger.info("Not saving as latest %s = %.5f is not better than best %.5f at iteration %d",
                        self._val_metric, value, self.best_metric, self.best_iter)

    def after_step(self):
        """At a periodic evaluation (not the last), save ``model_best`` if ``val_metric`` improved."""
        next_iter = self.trainer.iter + 1
        if self._period > 0 and next_iter % self._period == 0 and next_iter != self.trainer.max_iter:
            # only when EvalHook just put a value at this iteration
            latest = self.trainer.storage.latest().get(self._val_metric)
            if latest is not None and latest[1] == self.trainer.iter:
                self._best_checking()

    def after_train(self):
        """After a successful run, check the final evaluation's ``val_metric`` and save ``model_best`` if better."""
        if self.trainer.iter >= self.trainer.max_iter:
            self._best_checking()

    def state_dict(self):
        """Return ``{best_metric, best_iter}``, or ``{}`` before any best was recorded."""
        if self.best_metric is None:
            return {}
        return {"best_metric": self.best_metric, "best_iter": self.best_iter}

    def load_state_dict(self, state_dict):
        """Restore ``best_metric`` and ``best_iter``, so a resumed run compares with the same best."""
        self.best_metric = state_dict.get("best_metric")
        self.best_iter = state_dict.get("best_iter")


class PeriodicWriter(HookBase):
    """Call every writer every ``period`` iterations, at the last iteration and after training."""

    def __init__(self, writers: List[EventWriter], period: int = 20):
        self._writers = writers
        for w in writers:
            if not isinstance(w, EventWriter):
                raise TypeError(f"{w!r} is not an EventWriter")
        self._period = int(period)

    def after_step(self):
        """Call every writer's ``write()`` every ``period`` iterations and at the last iteration."""
        if (self.trainer.iter + 1) % self._period == 0 or self.trainer.iter == self.trainer.max_iter - 1:
            for writer in self._writers:
                writer.write()

    def after_train(self):
        """Write what is left (e.g. final evaluation results) with every writer, then close it."""
        for writer in self._writers:
            # flush what is left (e.g. final evaluation results), then close
            writer.write()
            writer.close()


class _MetricWatcher(HookBase):
    """Base of hooks that react to each new value of a validation metric (a flat storage key
    put by :class:`EvalHook` every ``eval_period`` iterations); must be registered after it.
    :meth:`_on_value` is called once per evaluation on every process with the main process's
    value (only it holds evaluation results), so all processes take the same decision. NaN / inf
    values are skipped; a metric missing from the results is an error naming ``key``.
    """

    def __init__(self, metric: str, mode: str, key: str, eval_period: int):
        if mode not in _BEST_MODES:
            raise ValueError(f"{key}.MODE must be one of {sorted(_BEST_MODES)}, got '{mode}'")
        self._metric = metric
        self._mode = mode
        self._key = key
        self._period = int(eval_period)
        self.best: Optional[float] = None
        self.num_bad_evals = 0

    def _improved(self, value: float, best: float) -> bool:
        raise NotImplementedError

    def _on_value(self, value: float) -> None:
        raise NotImplementedError

    def _local_value(self):
        """(whether an evaluation put results at this iteration, the metric's value or None)."""
        latest = self.trainer.storage.latest()
        ran = any(it == self.trainer.iter for k, (_, it) in latest.items() if "/" in k)
        entry = latest.get(self._metric)
        value = entry[0] if entry is not None and entry[1] == self.trainer.iter else None
        return ran, value

    def after_step(self):
        next_iter = self.trainer.iter + 1
        if self._period <= 0 or next_iter % self._period != 0 or next_iter == self.trainer.max_iter:
            return
        ran, value = comm.all_gather(self._local_value())[0]
        if value is None:
            if ran:
                latest = self.trainer.storage.latest()
                raise KeyError(f"{self._key}.METRIC '{self._metric}' is not among the evaluation results; "
                               f"available: {sorted(k for k in latest if '/' in k)}")
            return  # no evaluation at this iteration (e.g. before TEST.EVAL_START_ITER)
        if math.isnan(value) or math.isinf(value):
            logger.warning("%s is %s at iteration %d; ignored by %s", self._metric, value, self.trainer.iter,
                           type(self).__name__)
            return
        if self.best is None or self._improved(value, self.best):
            self.best = float(value)
            self.num_bad_evals = 0
        else:
            self.num_bad_evals += 1
        self._on_value(float(value))

    def state_dict(self):
        return {"best": self.best, "num_bad_evals": self.num_bad_evals}

    def load_state_dict(self, state_dict):
        self.best = state_dict.get("best")
        self.num_bad_evals = int(state_dict.get("num_bad_evals", 0))


class ReduceLROnPlateau(_MetricWatcher):
    """Multiply the lr by ``factor`` (via ``LRMultiplier.reduce``) when ``metric`` has not
    improved by more than ``threshold`` (relative, torch's "rel" mode) for more than
    ``patience`` evaluations; never below ``min_lr``. The scale and the counters are restored on resume.
    """

    def __init__(self, eval_period: int, metric: str, mode: str = "max", patience: int = 3, factor: float = 0.1,
                 threshold: float = 1e-4, min_lr: float = 0.0, scheduler=None):
        super().__init__(metric, mode, "SOLVER.PLATEAU", eval_period)
        if not 0.0 < factor < 1.0:
            raise ValueError(f"SOLVER.PLATEAU.FACTOR must be in (0, 1), got {factor}")
        self._patience = int(patience)
        self._factor = float(factor)
        self._threshold = float(threshold)
        self._min_lr = float(min_lr)
        self._scheduler = scheduler
        self.num_reductions = 0

    def _improved(self, value, best):
        # torch's threshold_mode "rel"
        if self._mode == "max":
            return value > best * (1 + self._threshold)
        return value < best * (1 - self._threshold)

    def _on_value(self, value):
        if self.num_bad_evals > self._patience:
            scheduler = self._scheduler or self.trainer.scheduler
            if not hasattr(scheduler, "reduce"):
                raise TypeError(f"ReduceLROnPlateau needs an LRMultiplier scheduler, got {type(scheduler).__name__}")
            scheduler.reduce(self._factor, self._min_lr)
            self.num_bad_evals = 0
            self.num_reductions += 1
            logger.info("%s has not improved for %d evaluations (best %.5f): lr scale reduced to %.3g",
                        self._metric, self._patience + 1, self.best, scheduler.scale)

    def state_dict(self):
        """Return ``best``, ``num_bad_evals`` and ``num_reductions``.

        The lr scale itself is part of the scheduler's state.
        """
        return {**super().state_dict(), "num_reductions": self.num_reductions}

    def load_state_dict(self, state_dict):
        """Restore ``best``, ``num_bad_evals`` and ``num_reductions`` from :meth:`state_dict`."""
        super().load_state_dict(state_dict)
        self.num_reductions = int(state_dict.get("num_reductions", 0))


class EarlyStopping(_MetricWatcher):
    """End training when ``metric`` has not improved by more than ``min_delta`` for
    ``patience`` evaluations in a row (Keras' rule). Stopping sets ``trainer.max_iter`` to the
    next iteration, so training ends as a success: the final evaluation runs and ``checkpointer``
    (if given) writes ``model_final.pth``. Register a :class:`BestCheckpointer` on the same
    metric to keep ``model_best.pth``.
    """

    def __init__(self, eval_period: int, metric: str, mode: str = "max", patience: int = 5, min_delta: float = 0.0,
                 checkpointer=None):
        super().__init__(metric, mode, "SOLVER.EARLY_STOPPING", eval_period)
        if patience < 1:
            raise ValueError(f"SOLVER.EARLY_STOPPING.PATIENCE must be >= 1, got {patience}")
        self._patience = int(patience)
        self._min_delta = float(min_delta)
        self._checkpointer = checkpointer
        self.stopped_iter: Optional[int] = None

    def _improved(self, value, best):
        return value > best + self._min_delta if self._mode == "max" else value < best - self._min_delta

    def before_train(self):
        """If a restored state says training already stopped early, set ``max_iter`` so no step runs."""
        if self.stopped_iter is not None:
            logger.info("Early stopping already triggered at iteration %d: not training further", self.stopped_iter)
            self.trainer.max_iter = self.trainer.start_iter

    def _on_value(self, value):
        if self.num_bad_evals >= self._patience and self.stopped_iter is None:
            self.stopped_iter = int(self.trainer.iter)
            logger.info("Early stopping at iteration %d: %s has not improved for %d evaluations (best %.5f)",
                        self.stopped_iter, self._metric, self._patience, self.best)
            self.trainer.max_iter = self.trainer.iter + 1
            if self._checkpointer is not None and comm.is_main_process():
                self._checkpointer.save("model_final", iteration=self.trainer.iter)

    def state_dict(self):
        """Return ``best``, ``num_bad_evals`` and ``stopped_iter`` (``None`` if not stopped)."""
        return {**super().state_dict(), "stopped_iter": self.stopped_iter}

    def load_state_dict(self, state_dict):
        """Restore ``best``, ``num_bad_evals`` and ``stopped_iter`` from :meth:`state_dict`."""
        super().load_state_dict(state_dict)
        self.stopped_iter = state_dict.get("stopped_iter")


class ModelEMA(HookBase):
    """Exponential moving average of the model's weights (``SOLVER.EMA``), kept by timm's
    ``ModelEmaV3`` and updated after every optimizer step.

    The decay of update ``t`` is ``min(decay, 1 - (1 + t) ** -2/3)`` with ``warmup`` (timm's
    warm-up; the average forgets the random start quickly, which matters in short runs), else
    ``decay``. Floating-point buffers (BatchNorm statistics) are averaged like the parameters.
    The average is part of the trainer state, so a resumed run continues it exactly.
    :meth:`applied` swaps it into the model, e.g. around an evaluation.

    Args:
        model: the trained model (DDP / DataParallel are unwrapped).
        decay: the largest decay.
        warmup: ramp the decay up from 0 over the first updates.
    """

    def __init__(self, model: torch.nn.Module, decay: float = 0.999, warmup: bool = True):
        from timm.utils import ModelEmaV3

        if not 0.0 <= decay < 1.0:
            raise ValueError(f"SOLVER.EMA.DECAY must be in [0, 1), got {decay}")
        self._model = _unwrap(model)
        self.ema = ModelEmaV3(self._model, decay=decay, use_warmup=warmup)
        self.ema.requires_grad_(False)
        self.updates = 0

    def after_step(self):
        """Fold the weights after this step's update into the average."""
        self.updates += 1
        self.ema.update(self._model, step=self.updates)

    def averaged_state_dict(self) -> Dict[str, torch.Tensor]:
        """The averaged weights, under the model's own state-dict keys."""
        return self.ema.module.state_dict()

    @contextlib.contextmanager
    def applied(self) -> Iterator[torch.nn.Module]:
        """Run the block with the averaged weights in the model (its own weights restored after)."""
        own = {k: v.detach().clone() for k, v in self._model.state_dict().items()}
        self._model.load_state_dict(self.averaged_state_dict())
        try:
            yield self._model
        finally:
            self._model.load_state_dict(own)

    def after_train(self):
        """After a successful run the model keeps the average (as ``model_final.pth`` does), so
        what is done with it next (overlays, export) uses the evaluated weights."""
        if self.trainer.iter >= self.trainer.max_iter and self.updates > 0:
            self._model.load_state_dict(self.averaged_state_dict())
            logger.info("Training done: the model holds the weight average (SOLVER.EMA, %d updates)", self.updates)

    def state_dict(self) -> Dict[str, Any]:
        """The average and the number of updates folded into it."""
        return {"updates": self.updates, "model": self.averaged_state_dict()}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Restore the average of a checkpoint (on resume)."""
        self.updates = int(state_dict["updates"])
        self.ema.module.load_state_dict(state_dict["model"])


def build_model_ema(cfg, model: torch.nn.Module) -> Optional[ModelEMA]:
    """The :class:`ModelEMA` hook of ``cfg.SOLVER.EMA`` for ``model``, or None when it is off."""
    ema = cfg.SOLVER.EMA
    return ModelEMA(model, ema.DECAY, ema.WARMUP) if ema.ENABLED else None


def averaged_weights(trainer) -> contextlib.AbstractContextManager:
    """A context in which the model holds the :class:`ModelEMA` average if ``trainer`` has one
    (the weights that are evaluated and kept); a no-op otherwise."""
    ema = trainer.find_hook(ModelEMA) if trainer is not None else None
    return ema.applied() if ema is not None else contextlib.nullcontext()
