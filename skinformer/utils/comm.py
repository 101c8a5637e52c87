"""Helpers for distributed (multi-process) training. Everything works without a process group."""
import functools
import logging
import time
from datetime import timedelta
from typing import Any, List

import numpy as np
import torch
import torch.distributed as dist

__all__ = [
    "get_world_size", "get_rank", "get_local_rank", "get_local_size", "is_main_process",
    "synchronize", "all_gather", "gather", "all_reduce", "reduce_dict", "shared_random_seed",
    "create_local_process_group", "destroy_process_group",
]

_LOCAL_PROCESS_GROUP = None
_LOCAL_WORLD_SIZE = 1


def _ready() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_world_size() -> int:
    """Number of processes (1 without a process group)."""
    return dist.get_world_size() if _ready() else 1


def get_rank() -> int:
    """Rank of this process (0 without a process group)."""
    return dist.get_rank() if _ready() else 0


def create_local_process_group(num_workers_per_machine: int) -> None:
    """Create the per-machine process group (call in every process after init_process_group)."""
    global _LOCAL_PROCESS_GROUP, _LOCAL_WORLD_SIZE
    assert _LOCAL_PROCESS_GROUP is None
    world = get_world_size()
    assert world % num_workers_per_machine == 0
    num_machines = world // num_workers_per_machine
    machine_rank = get_rank() // num_workers_per_machine
    for i in range(num_machines):
        ranks = list(range(i * num_workers_per_machine, (i + 1) * num_workers_per_machine))
        pg = dist.new_group(ranks)
        if i == machine_rank:
            _LOCAL_PROCESS_GROUP = pg
    _LOCAL_WORLD_SIZE = num_workers_per_machine


def destroy_process_group(wait_for_peers: bool = True, timeout: timedelta = timedelta(seconds=60)) -> None:
    """Tear down the process groups (no-op without one).

    With ``wait_for_peers`` every rank first checks in through the rendezvous store and waits until all
    have, so that no rank closes its sockets while a peer still has a collective's last message in
    flight: gloo then resets the connection and the peer aborts (SIGABRT) after a successful run.
    Pass ``wait_for_peers=False`` on an error path, where peers blocked in a collective should fail fast
    rather than wait ``timeout``.
    """
    global _LOCAL_PROCESS_GROUP, _LOCAL_WORLD_SIZE
    if not _ready():
        return
    world = dist.get_world_size()
    if wait_for_peers and world > 1:
        # the store is reached over its own connection, not gloo's pairs, so using it is safe here
        store = dist.distributed_c10d._get_default_store()
        store.add("skinformer/exit", 1)
        deadline = time.monotonic() + timeout.total_seconds()
        while store.add("skinformer/exit", 0) < world:
            if time.monotonic() > deadline:
                logging.getLogger(__name__).warning(
                    "Rank %d: not every rank reached shutdown within %s; closing anyway", get_rank(), timeout)
                break
            time.sleep(0.01)
    dist.destroy_process_group()
    _cpu_group.cache_clear()
    _LOCAL_PROCESS_GROUP = None
    _LOCAL_WORLD_SIZE = 1


def get_local_rank() -> int:
    """Rank of this process on its machine (0 without a process group)."""
    if not _ready():
        return 0
    if _LOCAL_PROCESS_GROUP is None:
        return get_rank() % max(_LOCAL_WORLD_SIZE, 1)
    return dist.get_rank(group=_LOCAL_PROCESS_GROUP)


def get_local_size() -> int:
    """Number of processes on this machine (1 without a process group)."""
    if not _ready():
        return 1
    return _LOCAL_WORLD_SIZE


def is_main_process() -> bool:
    """Whether this is rank 0 (which writes files and logs)."""
    return get_rank() == 0


def synchronize() -> None:
    """Barrier across all processes (no-op without a process group)."""
    if not _ready() or get_world_size() == 1:
        return
    if dist.get_backend() == dist.Backend.NCCL and torch.cuda.is_available():
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


@functools.lru_cache()
def _cpu_group():
    # NCCL cannot gather arbitrary Python objects; a gloo group can.
    if dist.get_backend() == "nccl":
        return dist.new_group(backend="gloo")
    return dist.group.WORLD


def all_gather(data: Any, group=None) -> List[Any]:
    """Gather picklable ``data`` from every process; returns a list indexed by rank."""
    if get_world_size() == 1:
        return [data]
    group = group or _cpu_group()
    out = [None] * dist.get_world_size(group)
    dist.all_gather_object(out, data, group=group)
    return out


def gather(data: Any, dst: int = 0, group=None) -> List[Any]:
    """Gather picklable ``data`` on rank ``dst``; other ranks get ``[]``."""
    if get_world_size() == 1:
        return [data]
    group = group or _cpu_group()
    if dist.get_rank(group) == dst:
        out = [None] * dist.get_world_size(group)
        dist.gather_object(data, out, dst=dst, group=group)
        return out
    dist.gather_object(data, None, dst=dst, group=group)
    return []


def all_reduce(tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """Sum (or average with ``op="mean"``) a tensor across processes, in place; returns it.

    Used for small statistics (confusion matrices, num_masks) so only they cross processes.
    """
    world = get_world_size()
    if world == 1:
        return tensor
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    if op == "mean":
        tensor /= world
    return tensor


def reduce_dict(input_dict, average: bool = True):
    """Reduce a dict of scalar tensors to rank 0 (values averaged if ``average``)."""
    world = get_world_size()
    if world < 2:
        return input_dict
    with torch.no_grad():
        names = sorted(input_dict.keys())
        values = torch.stack([input_dict[k] for k in names], dim=0)
        dist.reduce(values, dst=0)
        if dist.get_rank() == 0 and average:
            values /= world
        return dict(zip(names, values))


def shared_random_seed() -> int:
    """A random int that is the same in all processes (drawn by rank 0)."""
    ints = np.random.randint(2**31)
    return all_gather(ints)[0]
