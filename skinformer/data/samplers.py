"""Samplers: the infinite, seeded training stream and the sharded inference order.

The training stream is defined by *global positions* ``0, 1, 2, ...``: position ``p`` lies in
epoch ``p // N`` and takes element ``p % N`` of that epoch's permutation (seeded by
``(seed, epoch)``). Rank ``r`` of ``W`` takes positions ``r, r + W, r + 2W, ...`` — its shard of
every permutation. Everything is a pure function of ``(seed, position)``, so any sample of the
stream can be computed directly (exact resume, loader workers that each build whole batches)
and its augmentation seed (:func:`sample_seed`) does not depend on workers or restarts.
"""
import itertools
from typing import Dict, Iterator, Optional

import numpy as np
import torch

from skinformer.utils import comm

__all__ = ["TrainingSampler", "InferenceSampler", "sample_seed"]


def sample_seed(seed: int, position: int, attempt: int = 0) -> int:
    """Augmentation seed of the sample at global ``position`` (``attempt`` > 0 for replacements of
    unreadable samples): a 63-bit int derived from ``(seed, position, attempt)``."""
    state = np.random.SeedSequence([int(seed), int(position), int(attempt)]).generate_state(1, np.uint64)[0]
    return int(state) >> 1


class TrainingSampler(torch.utils.data.Sampler):
    """Infinite shuffled index stream for one rank, with random access by position.

    Args:
        size: number of dataset items (> 0).
        shuffle: shuffle every epoch (else ``0..N-1`` repeated).
        seed: non-negative seed; ``None`` = a random seed shared by all ranks.
        rank, world_size: default from :mod:`skinformer.utils.comm` (pass them to simulate ranks).

    Iterating yields this rank's dataset indices forever (detectron2 semantics).
    """

    def __init__(self, size: int, shuffle: bool = True, seed: Optional[int] = None,
                 rank: Optional[int] = None, world_size: Optional[int] = None):
        if not isinstance(size, int) or size <= 0:
            raise ValueError(f"TrainingSampler needs a dataset of at least one item, got size={size}")
        if seed is None or seed < 0:
            seed = comm.shared_random_seed()
        self._size = size
        self._shuffle = shuffle
        self._seed = int(seed)
        self._rank = comm.get_rank() if rank is None else int(rank)
        self._world_size = comm.get_world_size() if world_size is None else int(world_size)
        if not 0 <= self._rank < self._world_size:
            raise ValueError(f"rank {self._rank} is not in [0, world_size={self._world_size})")
        self._perm_cache: Dict[int, np.ndarray] = {}

    @property
    def seed(self) -> int:
        """Seed of the shuffle (shared by all ranks)."""
        return self._seed

    @property
    def size(self) -> int:
        """Number of samples in the dataset."""
        return self._size

    @property
    def rank(self) -> int:
        """Rank of this process."""
        return self._rank

    @property
    def world_size(self) -> int:
        """Number of processes the index stream is split over."""
        return self._world_size

    def permutation(self, epoch: int) -> np.ndarray:
        """The order of epoch ``epoch`` (global, before sharding)."""
        perm = self._perm_cache.get(epoch)
        if perm is None:
            if self._shuffle:
                perm = np.random.default_rng([self._seed, int(epoch)]).permutation(self._size)
            else:
                perm = np.arange(self._size)
            if len(self._perm_cache) >= 2:  # batches straddle at most two epochs
                self._perm_cache.pop(min(self._perm_cache))
            self._perm_cache[epoch] = perm
        return perm

    def global_position(self, local_position: int) -> int:
        """Global stream position of this rank's ``local_position``-th sample."""
        return int(local_position) * self._world_size + self._rank

    def index_at(self, global_position: int) -> int:
        """Dataset index at ``global_position`` of the stream."""
        epoch, offset = divmod(int(global_position), self._size)
        return int(self.permutation(epoch)[offset])

    def __iter__(self) -> Iterator[int]:
        for k in itertools.count():
            yield self.index_at(self.global_position(k))

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_perm_cache"] = {}
        return state


class InferenceSampler(torch.utils.data.Sampler):
    """Each rank gets a contiguous shard of ``range(size)`` (sizes differ by at most one), so the
    concatenation over ranks is the dataset order and every item is seen exactly once."""

    def __init__(self, size: int, rank: Optional[int] = None, world_size: Optional[int] = None):
        if size < 0:
            raise ValueError(f"InferenceSampler: size must be >= 0, got {size}")
        self._size = size
        rank = comm.get_rank() if rank is None else int(rank)
        world_size = comm.get_world_size() if world_size is None else int(world_size)
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
        shard, extra = divmod(size, world_size)
        sizes = [shard + int(r < extra) for r in range(world_size)]
        begin = sum(sizes[:rank])
        self._local_indices = range(begin, begin + sizes[rank])

    def __iter__(self):
        yield from self._local_indices

    def __len__(self) -> int:
        return len(self._local_indices)
