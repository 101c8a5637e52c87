"""Start ``main(*args)`` in one process per device, on one or several machines.

* World size 1: ``main`` runs in this process, no process group.
* Otherwise one process per device is spawned (``torch.multiprocessing.start_processes``,
  "spawn"); each joins a process group -- **NCCL when CUDA devices are used, GLOO on CPU** --,
  creates the per-machine group, selects its CUDA device (CUDA only), meets the others at a
  barrier and calls ``main``. On a machine without CUDA (or with ``device="cpu"``),
  ``num_gpus_per_machine=2`` therefore runs two CPU processes with gloo: useful to test
  distributed code paths, not a speed-up.
* Under ``torchrun`` (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` set) nothing is
  spawned: this process joins via ``env://``.
* ``dist_url="auto"`` picks a free local port (single machine only), so two jobs on one
  machine never collide on a port.
* A process that does not join within ``timeout`` fails with a message naming the URL and the
  expected world size instead of hanging forever.
"""
import logging
import os
import socket
import sys
import traceback
from datetime import timedelta
from typing import Any, Callable, Optional, Tuple

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from skinformer.utils import comm

__all__ = ["DEFAULT_TIMEOUT", "launch", "find_free_port", "is_torchrun", "use_cuda_for_launch"]

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = timedelta(minutes=30)
_TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR")


def find_free_port() -> int:
    """A TCP port that is free now on this machine (the OS picks it)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("", 0))
    port = sock.getsockname()[1]
    sock.close()
    # a small race remains (another program could take it before the group binds it)
    return port


def is_torchrun() -> bool:
    """Whether this process was started by ``torchrun`` (or another env:// launcher)."""
    return all(v in os.environ for v in _TORCHRUN_VARS)


def use_cuda_for_launch(num_gpus_per_machine: int, device: Optional[str] = None) -> bool:
    """CUDA processes iff ``device`` is not CPU and this machine has enough CUDA devices."""
    if device is not None and not str(device).startswith("cuda"):
        return False
    return torch.cuda.is_available() and torch.cuda.device_count() >= max(num_gpus_per_machine, 1)


def launch(
    main_func: Callable[..., Any],
    num_gpus_per_machine: int,
    num_machines: int = 1,
    machine_rank: int = 0,
    dist_url: Optional[str] = "auto",
    args: Tuple = (),
    timeout: timedelta = DEFAULT_TIMEOUT,
    device: Optional[str] = None,
) -> None:
    """Run ``main_func(*args)`` on ``num_gpus_per_machine × num_machines`` processes.

    Args:
        num_gpus_per_machine: processes on this machine (CUDA devices, or CPU processes
            with gloo when CUDA is not used).
        dist_url: ``tcp://host:port`` of machine 0, ``"auto"`` (free local port, single machine
            only), ``file://...`` (single machine; unreliable across machines) or ``env://``.
        device: ``"cpu"`` forces gloo CPU processes; ``"cuda"``/``None`` use CUDA if available.
        timeout: how long collectives (including the initial rendezvous) may wait.
    """
    if is_torchrun():
        _run_torchrun(main_func, args, timeout, device)
        return
    world_size = num_machines * num_gpus_per_machine
    if world_size <= 1:
        main_func(*args)
        return
    use_cuda = use_cuda_for_launch(num_gpus_per_machine, device)
    if not use_cuda:
        logger.warning(
            "Launching %d CPU processes with the gloo backend (CUDA %s). They are CPU processes, "
            "not GPUs: expect no speed-up.", num_gpus_per_machine,
            "not requested" if device is not None and not str(device).startswith("cuda") else "not available",
        )
    if dist_url is None or dist_url == "auto":
        if num_machines != 1:
            raise ValueError("--dist-url=auto is only supported on a single machine; give tcp://<machine 0>:<port>")
        dist_url = f"tcp://127.0.0.1:{find_free_port()}"
    if num_machines > 1 and dist_url.startswith("file://"):
        logger.warning("file:// init is unreliable across machines; prefer tcp://<machine 0>:<port>")
    mp.start_processes(
        _distributed_worker,
        nprocs=num_gpus_per_machine,
        args=(main_func, world_size, num_gpus_per_machine, machine_rank, dist_url, args, timeout, use_cuda),
        daemon=False,
        start_method="spawn",
    )


def _init_group(backend: str, init_method: str, world_size: int, rank: int, timeout: timedelta) -> None:
    try:
        dist.init_process_group(backend=backend, init_method=init_method, world_size=world_size, rank=rank,
                                timeout=timeout)
    except Exception as e:
        raise RuntimeError(
            f"Process rank {rank} could not join the process group at '{init_method}' "
            f"(backend {backend}, world size {world_size}, timeout {timeout}): {type(e).__name__}: {e}\n"
            "Check that every machine uses the same --dist-url / --num-machines / --num-gpus, that "
            "machine 0 is reachable on that port, and that no other job uses the port."
        ) from e


def _barrier_or_explain(timeout: timedelta) -> None:
    try:
        comm.synchronize()
    except Exception as e:
        raise RuntimeError(
            f"Rank {comm.get_rank()}: the start-up barrier failed or timed out after {timeout} "
            f"({type(e).__name__}: {e}). Another process probably crashed or never started; "
            "see its log (log.txt.rank<N> in OUTPUT_DIR)."
        ) from e


def _set_cpu_threads(local_world_size: int) -> None:
    # N CPU processes each defaulting to all cores oversubscribe the machine badly
    per_process = max(1, (os.cpu_count() or 1) // max(local_world_size, 1))
    torch.set_num_threads(per_process)


def _distributed_worker(local_rank, main_func, world_size, num_gpus_per_machine, machine_rank, dist_url, args,
                        timeout, use_cuda):
    if use_cuda and local_rank >= torch.cuda.device_count():
        raise RuntimeError(f"Local rank {local_rank} has no CUDA device ({torch.cuda.device_count()} visible)")
    global_rank = machine_rank * num_gpus_per_machine + local_rank
    _init_group("nccl" if use_cuda else "gloo", dist_url, world_size, global_rank, timeout)
    comm.create_local_process_group(num_gpus_per_machine)
    if use_cuda:
        torch.cuda.set_device(local_rank)
    else:
        _set_cpu_threads(num_gpus_per_machine)
    _barrier_or_explain(timeout)
    _run_main(main_func, args, global_rank)


def _run_main(main_func, args, rank: int) -> None:
    try:
        main_func(*args)
    except BaseException:
        # the parent re-raises only the first process's error, which is often a peer's
        # "connection reset"; print the real one with its rank
        print(f"[skinformer.launch] rank {rank} failed:\n{traceback.format_exc()}", file=sys.stderr, flush=True)
        # peers blocked in a collective fail fast instead of waiting for the timeout
        comm.destroy_process_group(wait_for_peers=False)
        raise
    comm.destroy_process_group(wait_for_peers=True)


def _run_torchrun(main_func, args, timeout, device) -> None:
    local_rank = int(os.environ["LOCAL_RANK"])
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ["WORLD_SIZE"]))
    use_cuda = use_cuda_for_launch(local_world, device)
    if not dist.is_initialized():
        _init_group("nccl" if use_cuda else "gloo", "env://", int(os.environ["WORLD_SIZE"]),
                    int(os.environ["RANK"]), timeout)
    comm.create_local_process_group(local_world)
    if use_cuda:
        torch.cuda.set_device(local_rank)
    else:
        _set_cpu_threads(local_world)
    _barrier_or_explain(timeout)
    _run_main(main_func, args, int(os.environ["RANK"]))
