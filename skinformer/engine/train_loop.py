"""The training loop: hooks, the loop itself, and one optimisation step.

* :class:`HookBase`: callbacks around the loop (``before_train`` ... ``after_train``).
* :class:`TrainerBase`: owns the iteration loop, the :class:`EventStorage` and the hooks.
* :class:`SimpleTrainer`: one step = fetch batch(es) -> forward (loss dict) -> backward ->
  ``after_backward`` hooks -> metrics -> ``optimizer.step()``; gradient accumulation over
  ``accumulate_steps`` micro-batches; non-finite losses stop training before the step.
* :class:`AMPTrainer`: the same step under ``torch.autocast`` (float16 / bfloat16), with a
  ``GradScaler`` for float16 on CUDA.
"""
import logging
import time
import weakref
from contextlib import contextmanager, nullcontext
from typing import Any, Dict, List, Mapping, Optional

import numpy as np
import torch
from torch.nn.parallel import DataParallel, DistributedDataParallel

from skinformer.utils import comm
from skinformer.utils.env import get_rng_state, set_rng_state
from skinformer.utils.events import EventStorage, get_event_storage

__all__ = [
    "HookBase",
    "TrainerBase",
    "SimpleTrainer",
    "AMPTrainer",
    "rng_preserved",
    "rng_state_to_safe",
    "rng_state_from_safe",
]

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------
# RNG helpers (exact resume)
# ------------------------------------------------------------------------------------------
def rng_state_to_safe(state: Dict[str, Any]) -> Dict[str, Any]:
    """Turn :func:`get_rng_state` output into tensors / lists / numbers only, so a checkpoint
    holding it loads with ``torch.load(weights_only=True)`` (numpy arrays would not)."""
    out = dict(state)
    if "numpy" in out:
        name, keys, pos, has_gauss, cached = out["numpy"]
        out["numpy"] = (str(name), np.asarray(keys).astype(np.int64).tolist(), int(pos), int(has_gauss), float(cached))
    if "python" in out:
        version, internal, gauss = out["python"]
        out["python"] = (int(version), tuple(int(x) for x in internal), gauss)
    return out


def rng_state_from_safe(state: Dict[str, Any]) -> Dict[str, Any]:
    """Inverse of :func:`rng_state_to_safe`: the tuples ``numpy`` and ``random`` accept again."""
    out = dict(state)
    if "numpy" in out:
        name, keys, pos, has_gauss, cached = out["numpy"]
        out["numpy"] = (name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached)
    if "python" in out:
        version, internal, gauss = out["python"]
        out["python"] = (version, tuple(internal), gauss)
    return out


@contextmanager
def rng_preserved():
    """Run a block without disturbing the global RNGs (python, numpy, torch, CUDA).

    Evaluation and data-iterator creation consume random numbers; doing them inside this block
    keeps the training RNG stream identical between an uninterrupted and a resumed run.
    """
    state = get_rng_state()
    try:
        yield
    finally:
        set_rng_state(state)


# ------------------------------------------------------------------------------------------
# Hooks and the loop
# ------------------------------------------------------------------------------------------
class HookBase:
    """Base class for hooks registered with a :class:`TrainerBase`.

    Call order for ``trainer.train()``::

        hook.before_train()
        for iter in range(start_iter, max_iter):
            hook.before_step()
            trainer.run_step()          # calls hook.after_backward() inside
            hook.after_step()
        iter += 1                       # only if every step succeeded
        hook.after_train()              # always, also after an exception

    ``self.trainer`` is a weak proxy to the trainer (set by ``register_hooks``). A hook with
    state that must survive a resume returns it from :meth:`state_dict`; the trainer stores it
    in checkpoints keyed by the hook's class qualname.
    """

    trainer: "TrainerBase" = None

    def before_train(self):
        """Called once before the first iteration."""
        pass

    def after_train(self):
        """Called once after the last iteration, also when training raised."""
        pass

    def before_step(self):
        """Called before each iteration."""
        pass

    def after_backward(self):
        """Called in each iteration after the backward pass(es), before ``optimizer.step()``."""
        pass

    def after_step(self):
        """Called after each iteration (after ``optimizer.step()``)."""
        pass

    def state_dict(self) -> Dict[str, Any]:
        """Return the hook's state to store in checkpoints; empty (the default) means stateless."""
        return {}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Restore the state returned by :meth:`state_dict` (on resume). No-op by default."""
        pass


class TrainerBase:
    """A loop over iterations with hooks and an :class:`EventStorage`.

    Attributes: ``iter`` (current iteration), ``start_iter``, ``max_iter`` (exclusive),
    ``storage`` (the open EventStorage during :meth:`train`).
    """

    def __init__(self) -> None:
        self._hooks: List[HookBase] = []
        self.iter: int = 0
        self.start_iter: int = 0
        self.max_iter: int = 0
        self.storage: Optional[EventStorage] = None
        # smoothing windows from a checkpoint, put into the storage train() opens
        self._storage_state: Optional[Dict[str, Any]] = None

    def register_hooks(self, hooks: List[Optional[HookBase]]) -> None:
        """Register hooks (``None`` entries are skipped); they run in the order given."""
        hooks = [h for h in hooks if h is not None]
        for h in hooks:
            if not isinstance(h, HookBase):
                raise TypeError(f"Hooks must derive from HookBase, got {type(h).__name__}")
            # a weak proxy avoids a trainer <-> hook reference cycle
            h.trainer = weakref.proxy(self)
        self._hooks.extend(hooks)

    def find_hook(self, cls: type) -> Optional[HookBase]:
        """The first registered hook that is an instance of ``cls``, or None."""
        return next((h for h in self._hooks if isinstance(h, cls)), None)

    def train(self, start_iter: int, max_iter: int) -> None:
        """Run iterations ``start_iter`` … ``max_iter - 1`` with the hooks inside a new :class:`EventStorage`.

        Smoothing windows restored by :meth:`load_state_dict` are loaded into that storage first. ``self.max_iter`` is
        re-read every iteration, so a hook may shorten the run; ``after_train`` runs even if an exception is raised.
        """
        logger.info("Starting training from iteration %d", start_iter)
        self.iter = self.start_iter = start_iter
        self.max_iter = max_iter
        with EventStorage(start_iter) as self.storage:
            if self._storage_state is not None:
                self.storage.load_state_dict(self._storage_state)
                self._storage_state = None
            try:
                self.before_train()
                # self.max_iter, not max_iter: a hook (early stopping) may shorten the run
                while self.iter < self.max_iter:
                    self.before_step()
                    self.run_step()
                    self.after_step()
                    self.iter += 1
                # iter == max_iter only after success: lets hooks tell success from a crash
            except Exception:
                logger.exception("Exception during training at iteration %d:", self.iter)
                raise
            finally:
                self.after_train()

    def before_train(self) -> None:
        """Call ``before_train`` of every hook, in registration order."""
        for h in self._hooks:
            h.before_train()

    def after_train(self) -> None:
        """Set ``storage.iter`` to the current iteration and call ``after_train`` of every hook."""
        self.storage.iter = self.iter
        for h in self._hooks:
            h.after_train()

    def before_step(self) -> None:
        """Set ``storage.iter`` to the current iteration and call ``before_step`` of every hook."""
        # keep storage.iter equal to trainer.iter for everything that runs during the step
        self.storage.iter = self.iter
        for h in self._hooks:
            h.before_step()

    def after_backward(self) -> None:
        """Call ``after_backward`` of every hook."""
        for h in self._hooks:
            h.after_backward()

    def after_step(self) -> None:
        """Call ``after_step`` of every hook."""
        for h in self._hooks:
            h.after_step()

    def run_step(self) -> None:
        """Run one training iteration; implemented by subclasses."""
        raise NotImplementedError

    def state_dict(self) -> Dict[str, Any]:
        """Return the resumable loop state.

        Keys: ``iteration``; ``hooks`` (non-empty hook states keyed by class qualname; only the first of two
        stateful hooks of one class is saved); ``storage`` (the event storage's state, when a storage is open).
        """
        ret: Dict[str, Any] = {"iteration": self.iter}
        hooks_state = {}
        for h in self._hooks:
            sd = h.state_dict()
            if sd:
                name = type(h).__qualname__
                if name in hooks_state:
                    # two stateful hooks of one class cannot be told apart on load
                    logger.warning("Two stateful hooks of class %s; only the first one's state is saved", name)
                    continue
                hooks_state[name] = sd
        if hooks_state:
            ret["hooks"] = hooks_state
        if self.storage is not None:
            ret["storage"] = self.storage.state_dict()
        return ret

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore ``iteration`` and the hook states (matched by class qualname).

        The storage state is kept and loaded into the storage that the next :meth:`train` opens. Saved
        states of hooks that are not registered are ignored with a warning.
        """
        self.iter = int(state_dict["iteration"])
        self._storage_state = state_dict.get("storage")
        for key, value in state_dict.get("hooks", {}).items():
            for h in self._hooks:
                if type(h).__qualname__ == key:
                    h.load_state_dict(value)
                    logger.info("Restored the state of hook %s", key)
                    break
            else:
                logger.warning("No hook '%s' is registered; its saved state is ignored.", key)


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if isinstance(model, (DistributedDataParallel, DataParallel)) else model


class SimpleTrainer(TrainerBase):
    """One model, one optimizer, one infinite data iterator.

    Each iteration consumes ``accumulate_steps`` batches; each micro-batch's loss is divided by
    ``accumulate_steps`` so the summed gradient equals that of one batch of the combined size
    (for losses that are means over the batch). Under DDP, gradients are synchronised only on
    the last micro-batch.

    The model (in training mode) takes ``list[dict]`` and returns a dict of scalar losses (or
    one scalar tensor). A non-finite loss on any process raises ``FloatingPointError`` naming
    the iteration and every loss term, *before* ``optimizer.step()``: weights and optimizer
    state stay those of the last good step, and no checkpoint is written for the bad step.

    The data loader may implement ``state_dict()`` / ``load_state_dict()`` (sampler position);
    it is then part of :meth:`state_dict` for exact resume.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        data_loader,
        optimizer: torch.optim.Optimizer,
        accumulate_steps: int = 1,
        gather_metric_period: int = 1,
    ):
        super().__init__()
        if accumulate_steps < 1:
            raise ValueError(f"SOLVER.ACCUMULATE_STEPS must be >= 1, got {accumulate_steps}")
        model.train()
        self.model = model
        self.data_loader = data_loader
        self._data_loader_iter_obj = None
        self.optimizer = optimizer
        self.accumulate_steps = int(accumulate_steps)
        self.gather_metric_period = int(gather_metric_period)

    # -- data ------------------------------------------------------------------------------
    @property
    def _data_loader_iter(self):
        # created lazily so that a loader state restored by load_state_dict() takes effect;
        # RNG preserved because creating a torch DataLoader iterator draws a seed
        if self._data_loader_iter_obj is None:
            with rng_preserved():
                self._data_loader_iter_obj = iter(self.data_loader)
        return self._data_loader_iter_obj

    def after_train(self) -> None:
        """Report the bad samples the data loader skipped (if it supports it), then run the hooks."""
        # the loader skips bad samples as it goes; the run ends with their count
        report = getattr(self.data_loader, "report_bad_samples", None)
        if report is not None:
            report()
        super().after_train()

    def reset_data_loader(self, data_loader_builder=None) -> None:
        """Drop the current iterator (optionally replacing the loader); a new one is made lazily."""
        if data_loader_builder is not None:
            self.data_loader = data_loader_builder()
        self._data_loader_iter_obj = None

    # -- one step --------------------------------------------------------------------------
    def _forward(self, data) -> Dict[str, torch.Tensor]:
        loss_dict = self.model(data)
        if isinstance(loss_dict, torch.Tensor):
            loss_dict = {"total_loss": loss_dict}
        if not isinstance(loss_dict, Mapping) or not loss_dict:
            raise TypeError(
                "In training mode the model must return a non-empty dict of scalar losses (or one "
                f"scalar tensor); got {type(loss_dict).__name__}"
            )
        return loss_dict

    def _backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def _optimizer_step(self) -> None:
        self.optimizer.step()

    def run_step(self) -> None:
        """Run one iteration: ``accumulate_steps`` forward/backward passes, ``after_backward`` hooks, then the step.

        Gradients are zeroed first; each micro-batch loss is divided by ``accumulate_steps``. Losses averaged
        over the micro-batches and the data time are written every ``gather_metric_period`` iterations and on
        the last one. Raises ``FloatingPointError`` on a non-finite loss on any process, before the optimizer step.
        """
        assert self.model.training, "[SimpleTrainer] model was changed to eval mode!"
        self.optimizer.zero_grad(set_to_none=True)
        n = self.accumulate_steps
        data_time = 0.0
        summed: Dict[str, torch.Tensor] = {}
        is_ddp = isinstance(self.model, DistributedDataParallel)
        for micro in range(n):
            start = time.perf_counter()
            data = next(self._data_loader_iter)
            data_time += time.perf_counter() - start
            # skip DDP's gradient all-reduce on all but the last micro-batch
            sync_ctx = self.model.no_sync() if (is_ddp and micro < n - 1) else nullcontext()
            with sync_ctx:
                loss_dict = self._forward(data)
                losses = sum(loss_dict.values())
                self._check_finite(loss_dict, losses, micro)
                self._backward(losses / n if n > 1 else losses)
            for k, v in loss_dict.items():
                v = v.detach()
                summed[k] = summed[k] + v if k in summed else v
        self.after_backward()
        if self.iter % self.gather_metric_period == 0 or self.iter == self.max_iter - 1:
            self._write_metrics({k: v / n for k, v in summed.items()}, data_time)
        self._optimizer_step()

    def _check_finite(self, loss_dict: Mapping[str, torch.Tensor], losses: torch.Tensor, micro: int) -> None:
        bad = ~torch.isfinite(losses.detach()).all()
        if comm.get_world_size() > 1:
            # every process must stop, or the others hang in the next collective
            flag = bad.to(torch.float32).reshape(1)
            comm.all_reduce(flag)
            bad_anywhere = bool(flag.item() > 0)
        else:
            bad_anywhere = bool(bad.item())
        if not bad_anywhere:
            return
        terms = ", ".join(f"{k}={float(v.detach().float().mean()):.6g}" for k, v in loss_dict.items())
        where = "" if self.accumulate_steps == 1 else f" (micro-batch {micro + 1}/{self.accumulate_steps})"
        local = "" if bool(bad.item()) else " (this process's losses are finite: another process saw the non-finite value)"
        raise FloatingPointError(
            f"Loss became infinite or NaN at iteration={self.iter}{where} on rank {comm.get_rank()}{local}!\n"
            f"loss terms: {terms}; total={float(losses.detach().float()):.6g}.\n"
            "Training stopped before the optimizer step, so weights, optimizer state and the last "
            "checkpoint are those of the last good iteration. Try a lower SOLVER.BASE_LR, gradient "
            "clipping (SOLVER.CLIP_GRADIENTS.ENABLED) or check the data of this iteration."
        )

    def _write_metrics(self, loss_dict: Mapping[str, torch.Tensor], data_time: float, prefix: str = "") -> None:
        SimpleTrainer.write_metrics(loss_dict, data_time, prefix)

    @staticmethod
    def write_metrics(loss_dict: Mapping[str, torch.Tensor], data_time: float, prefix: str = "") -> None:
        """Gather losses and data time from all processes; rank 0 averages losses, takes the
        max data time, and puts them in the event storage (``total_loss`` = sum of terms)."""
        metrics = {k: float(v.detach().cpu().item()) for k, v in loss_dict.items()}
        metrics["data_time"] = data_time
        all_metrics = comm.gather(metrics)
        if not comm.is_main_process():
            return
        storage = get_event_storage()
        # the slowest process's data time tells whether loading is the bottleneck
        storage.put_scalar("data_time", max(m.pop("data_time") for m in all_metrics))
        averaged = {k: float(np.mean([m[k] for m in all_metrics])) for k in all_metrics[0]}
        storage.put_scalar(f"{prefix}total_loss", sum(averaged.values()))
        if "total_loss" in averaged and len(averaged) == 1:
            return
        storage.put_scalars(**{prefix + k: v for k, v in averaged.items()})

    # -- state -----------------------------------------------------------------------------
    def state_dict(self) -> Dict[str, Any]:
        """Return the loop state plus ``optimizer``, ``data_loader`` (if the loader has a ``state_dict``),
        ``rng`` (this process's python/numpy/torch/CUDA RNG states, ``weights_only``-loadable) and ``world_size``.
        """
        ret = super().state_dict()
        ret["optimizer"] = self.optimizer.state_dict()
        if hasattr(self.data_loader, "state_dict"):
            ret["data_loader"] = self.data_loader.state_dict()
        ret["rng"] = rng_state_to_safe(get_rng_state())
        ret["world_size"] = comm.get_world_size()
        return ret

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore the loop, optimizer and data loader position, and (on rank 0 only) the RNG states.

        After a loader state is restored the iterator is reset, so the next batch is the one after the checkpoint.
        """
        super().load_state_dict(state_dict)
        self.optimizer.load_state_dict(state_dict["optimizer"])
        logger.info("Restored optimizer state (%d param groups)", len(self.optimizer.param_groups))
        if "data_loader" in state_dict:
            if hasattr(self.data_loader, "load_state_dict"):
                self.data_loader.load_state_dict(state_dict["data_loader"])
                logger.info("Restored data loader position: %s", _short(state_dict["data_loader"]))
            else:
                logger.warning("The checkpoint has a data loader state but the loader cannot load it; "
                               "the data order will not continue exactly.")
            self.reset_data_loader()
        if "rng" in state_dict:
            # a checkpoint holds rank 0's RNG; other ranks keep their SEED + rank streams
            if comm.get_rank() == 0:
                set_rng_state(rng_state_from_safe(state_dict["rng"]))
                logger.info("Restored RNG states (%s)", ", ".join(sorted(state_dict["rng"].keys())))


def _short(obj: Any, limit: int = 200) -> str:
    s = repr(obj)
    return s if len(s) <= limit else s[:limit] + "..."


_AMP_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}


class AMPTrainer(SimpleTrainer):
    """:class:`SimpleTrainer` with automatic mixed precision.

    ``precision`` is ``torch.float16`` / ``torch.bfloat16`` (or their names). Autocast runs on
    the device type of the model's parameters. A ``GradScaler`` is created for float16 on CUDA
    (bfloat16 has float32's range and needs none); gradients reach the optimizer unscaled, so
    clipping inside ``optimizer.step()`` sees true magnitudes. Note ``after_backward`` hooks
    see *scaled* gradients when a scaler is used.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        data_loader,
        optimizer: torch.optim.Optimizer,
        accumulate_steps: int = 1,
        gather_metric_period: int = 1,
        precision="float16",
        grad_scaler=None,
        log_grad_scaler: bool = False,
    ):
        super().__init__(model, data_loader, optimizer, accumulate_steps, gather_metric_period)
        if isinstance(precision, str):
            if precision not in _AMP_DTYPES:
                raise ValueError(f"SOLVER.AMP.DTYPE must be one of {sorted(_AMP_DTYPES)}, got '{precision}'")
            precision = _AMP_DTYPES[precision]
        self.precision = precision
        params = list(_unwrap(model).parameters())
        self.device_type = params[0].device.type if params else "cpu"
        if grad_scaler is None and precision == torch.float16 and self.device_type == "cuda":
            grad_scaler = torch.amp.GradScaler("cuda")
        self.grad_scaler = grad_scaler
        self.log_grad_scaler = log_grad_scaler

    def _forward(self, data):
        with torch.autocast(device_type=self.device_type, dtype=self.precision):
            return super()._forward(data)

    def _backward(self, loss: torch.Tensor) -> None:
        if self.grad_scaler is None:
            loss.backward()
        else:
            self.grad_scaler.scale(loss).backward()

    def _optimizer_step(self) -> None:
        if self.grad_scaler is None:
            self.optimizer.step()
            return
        # unscales first (so clipping sees real gradients), skips the step on inf/nan grads
        self.grad_scaler.step(self.optimizer)
        if self.log_grad_scaler and comm.is_main_process():
            get_event_storage().put_scalar("[metric]grad_scaler", self.grad_scaler.get_scale())
        self.grad_scaler.update()

    def state_dict(self) -> Dict[str, Any]:
        """Return :meth:`SimpleTrainer.state_dict` plus ``grad_scaler`` when a ``GradScaler`` is used."""
        ret = super().state_dict()
        if self.grad_scaler is not None:
            ret["grad_scaler"] = self.grad_scaler.state_dict()
        return ret

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore :meth:`SimpleTrainer.load_state_dict` state and, if present and a scaler is used, the scaler."""
        super().load_state_dict(state_dict)
        if self.grad_scaler is not None and "grad_scaler" in state_dict:
            self.grad_scaler.load_state_dict(state_dict["grad_scaler"])
            logger.info("Restored grad scaler (scale=%s)", state_dict["grad_scaler"].get("scale"))
