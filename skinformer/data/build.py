"""Data loaders.

* :func:`get_dataset_dicts` — dataset dicts of one or more registered names (each tagged with
  ``dataset_name`` so mappers pick the right metadata).
* :func:`build_train_loader` -> :class:`TrainLoader`: an infinite iterable of batches
  (``list[dict]`` of ``SOLVER.IMS_PER_BATCH // world_size`` mapped samples) with
  ``state_dict()`` / ``load_state_dict()`` for exact resume.
* :func:`build_test_loader` — a finite DataLoader of ``list[dict]`` batches, sharded over ranks.

How the training stream is made reproducible and resumable: rank-local batch ``j`` holds the
samples at the rank's stream positions ``j*B .. j*B+B-1`` (:class:`~.samplers.TrainingSampler`),
each mapped with ``_aug_seed = sample_seed(seed, global position)``. Loader worker ``w`` of ``n``
builds the batches ``j ≡ w (mod n)`` and the DataLoader returns them in order, so the stream is
the same for any ``num_workers`` and resuming at batch ``j`` only needs ``j`` and the seed.
A bad training sample — its mapper returns ``None`` (an unreadable file) or raises
:class:`~.mask_io.DataFileError` (image/mask size mismatch, bad label values, ...) — is handled by
one policy, whatever the kind: it is skipped with a warning naming the file and the reason, replaced
by the next dataset item(s) ``(i + 1) % N, ...`` with seeds ``sample_seed(seed, position, attempt)``,
and counted; more than ``DATALOADER.MAX_BAD_SAMPLES`` distinct bad files stop training with an
error listing them, and the count is logged when training ends (:meth:`TrainLoader.report_bad_samples`).
"""
import logging
import os
from typing import Callable, Dict, List, Optional, Sequence, Union

import torch
from torch.utils.data import DataLoader

from skinformer.utils import comm

from .catalog import DatasetCatalog, MetadataCatalog
from .common import DatasetFromList
from .mask_io import DataFileError
from .samplers import InferenceSampler, TrainingSampler, sample_seed

__all__ = ["get_dataset_dicts", "TrainLoader", "build_train_loader", "build_test_loader", "trivial_batch_collator",
           "resolve_num_workers"]

logger = logging.getLogger(__name__)

# a mapper that returns None this many times in a row for one position is a broken dataset
_MAX_CONSECUTIVE_SKIPS = 50


def trivial_batch_collator(batch: List) -> List:
    """Batches are plain lists of mapped dicts."""
    return batch


def _available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def resolve_num_workers(num_workers: int, max_workers: int = 4) -> int:
    """``DATALOADER.NUM_WORKERS``: a count (>= 0), or -1 = chosen for the machine: the CPUs this
    process may use minus torch's intra-op threads (at most ``max_workers``), so loader workers and
    the model's threads together do not oversubscribe the machine (2 CPUs and 1 torch thread:
    1 worker; 2 torch threads: 0, samples are mapped in the main process)."""
    num_workers = int(num_workers)
    if num_workers >= 0:
        return num_workers
    if num_workers != -1:
        raise ValueError(f"DATALOADER.NUM_WORKERS = {num_workers} is not valid; expected >= 0 or -1 (auto)")
    return max(0, min(max_workers, _available_cpus() - torch.get_num_threads()))


def get_dataset_dicts(names: Union[str, Sequence[str]], filter_empty: bool = False) -> List[Dict]:
    """Concatenated dataset dicts of ``names``; each dict gets ``dataset_name``.

    Args:
        filter_empty: drop instance-style dicts whose ``annotations`` list is empty.

    Raises ``ValueError`` for an empty dataset or for datasets with different ``classes``.
    """
    if isinstance(names, str):
        names = [names]
    if len(names) == 0:
        raise ValueError("get_dataset_dicts: no dataset names given (check DATASETS.TRAIN / DATASETS.TEST)")
    out: List[Dict] = []
    first_classes = None
    for name in names:
        dicts = DatasetCatalog.get(name)
        if not isinstance(dicts, list) or len(dicts) == 0:
            raise ValueError(f"Dataset '{name}' is empty (its registered function returned {type(dicts).__name__} "
                             f"of length {len(dicts) if hasattr(dicts, '__len__') else '?'})")
        classes = MetadataCatalog.get(name).get("classes")
        if first_classes is None:
            first_classes = (name, classes)
        elif classes != first_classes[1]:
            raise ValueError(
                f"Datasets '{first_classes[0]}' and '{name}' have different classes ({first_classes[1]} vs "
                f"{classes}); datasets trained or evaluated together must share metadata.classes"
            )
        for d in dicts:
            d = dict(d)
            d.setdefault("dataset_name", name)
            out.append(d)
        logger.info("Loaded %d images from dataset '%s'", len(dicts), name)
    if filter_empty:
        before = len(out)
        out = [d for d in out if "annotations" not in d or len(d["annotations"]) > 0]
        if before != len(out):
            logger.info("Removed %d images without annotations; %d left", before - len(out), len(out))
    return out


class _Batch(list):
    """A batch (``list[dict]``) that also carries ``skipped``: ``[(file_name, reason)]`` of the bad
    samples replaced while it was built (it travels from loader workers to the main process)."""

    def __init__(self, items, skipped):
        super().__init__(items)
        self.skipped = skipped


class _BatchStream(torch.utils.data.IterableDataset):
    """Yields rank-local batches ``start, start+1, ...``; DataLoader worker ``w`` of ``n`` makes
    batches ``start + w, start + w + n, ...`` (the DataLoader interleaves them back in order)."""

    def __init__(self, dataset: DatasetFromList, mapper: Callable, sampler: TrainingSampler,
                 batch_size: int, start_batch: int):
        self.dataset = dataset
        self.mapper = mapper
        self.sampler = sampler
        self.batch_size = batch_size
        self.start_batch = start_batch

    def _map_position(self, position: int, skipped: List) -> Dict:
        n = len(self.dataset)
        idx = self.sampler.index_at(position)
        for attempt in range(min(n, _MAX_CONSECUTIVE_SKIPS)):
            d = self.dataset[(idx + attempt) % n]
            d["_aug_seed"] = sample_seed(self.sampler.seed, position, attempt)
            file_name = str(d.get("file_name"))
            try:
                out = self.mapper(d)
            except DataFileError as e:
                logger.warning("Skipping bad training sample %s: %s", file_name, e)
                skipped.append((file_name, str(e)))
                continue
            if out is not None:
                return out
            skipped.append((file_name, "unreadable (see the warning above)"))
        raise RuntimeError(
            f"The mapper returned None for {min(n, _MAX_CONSECUTIVE_SKIPS)} consecutive dataset items starting "
            f"at {self.dataset[idx].get('file_name')}; the training data looks unreadable "
            "(see the warnings above, and run tools/validate_dataset.py)"
        )

    def make_batch(self, j: int) -> List[Dict]:
        first = j * self.batch_size
        skipped: List = []
        items = [self._map_position(self.sampler.global_position(k), skipped)
                 for k in range(first, first + self.batch_size)]
        return _Batch(items, skipped)

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        wid, nw = (0, 1) if info is None else (info.id, info.num_workers)
        j = self.start_batch + wid
        while True:
            yield self.make_batch(j)
            j += nw


def _worker_init(worker_id: int) -> None:
    # Augmentations use the per-sample generator; seeding the global RNGs only makes stray
    # uses of np.random/random/torch in user mappers reproducible too.
    from skinformer.utils.env import seed_all_rng

    info = torch.utils.data.get_worker_info()
    seed_all_rng((info.dataset.sampler.seed + 1000003 * (worker_id + 1) + info.dataset.start_batch) % 2**31)


class TrainLoader:
    """Infinite iterable of training batches with exact resume.

    Args:
        dataset: list of dataset dicts (kept serialized, see :class:`~.common.DatasetFromList`).
        mapper: ``dict -> dict or None``; must draw augmentation randomness from ``_aug_seed``.
        batch_size: samples per batch on this process.
        num_workers: DataLoader worker processes (0 = map in the main process).
        seed: stream seed (>= 0); ``None``/negative = a random seed shared by all ranks.
        rank, world_size: default from :mod:`skinformer.utils.comm`.
        shuffle: shuffle each epoch.
        max_bad_samples: distinct bad training files tolerated (skipped and counted, see the module
            docstring); one more stops training with an error listing them. ``-1``: no limit.

    ``state_dict()`` = ``{"num_batches", "seed", "batch_size", "world_size", "dataset_size"}``;
    after ``load_state_dict(state)`` iteration continues with batch ``num_batches`` — the same
    samples and augmentations an uninterrupted run would have produced. Use one iterator at a time.
    """

    def __init__(self, dataset: Sequence[Dict], mapper: Callable, *, batch_size: int, num_workers: int = 0,
                 seed: Optional[int] = None, rank: Optional[int] = None, world_size: Optional[int] = None,
                 shuffle: bool = True, max_bad_samples: int = -1):
        if batch_size <= 0:
            raise ValueError(f"TrainLoader: batch_size must be > 0, got {batch_size}")
        self.dataset = dataset if isinstance(dataset, DatasetFromList) else DatasetFromList(dataset, copy=False)
        self.mapper = mapper
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.sampler = TrainingSampler(len(self.dataset), shuffle=shuffle, seed=seed, rank=rank,
                                       world_size=world_size)
        self._num_batches = 0
        self._generation = 0
        self.max_bad_samples = int(max_bad_samples)
        self.bad_samples: Dict[str, str] = {}  # file name -> reason, in the order first seen

    @property
    def seed(self) -> int:
        """Seed of the sampler's shuffled index stream."""
        return self.sampler.seed

    @property
    def num_batches(self) -> int:
        """Batches handed out so far."""
        return self._num_batches

    def state_dict(self) -> Dict:
        """Position of the data stream: batches handed out, seed, and batch/world/dataset sizes
        (the sizes are only compared on :meth:`load_state_dict`)."""
        return {
            "num_batches": self._num_batches,
            "seed": self.sampler.seed,
            "batch_size": self.batch_size,
            "world_size": self.sampler.world_size,
            "dataset_size": len(self.dataset),
        }

    def load_state_dict(self, state: Dict) -> None:
        """Resume the stream from a :meth:`state_dict`: restore the batch count and seed (rebuilding
        the sampler if the seed differs); size mismatches are logged, not raised. A live iterator restarts there."""
        for key, now in (("batch_size", self.batch_size), ("world_size", self.sampler.world_size),
                         ("dataset_size", len(self.dataset))):
            if key in state and state[key] != now:
                logger.warning(
                    "Data loader state was saved with %s=%s but it is now %s: the data stream continues, "
                    "but not exactly as the original run would have.", key, state[key], now)
        if state.get("seed") is not None and state["seed"] != self.sampler.seed:
            logger.info("Data loader: restoring stream seed %d (was %d)", state["seed"], self.sampler.seed)
            self.sampler = TrainingSampler(len(self.dataset), shuffle=self.sampler._shuffle, seed=state["seed"],
                                           rank=self.sampler.rank, world_size=self.sampler.world_size)
        self._num_batches = int(state["num_batches"])
        self._generation += 1  # a live iterator restarts from the restored position
        logger.info("Data loader resumes at batch %d (seed %d)", self._num_batches, self.sampler.seed)

    def _make_loader(self, start_batch: int):
        stream = _BatchStream(self.dataset, self.mapper, self.sampler, self.batch_size, start_batch)
        if self.num_workers == 0:
            return iter(stream)
        return iter(DataLoader(
            stream, batch_size=None, num_workers=self.num_workers, collate_fn=trivial_batch_collator,
            worker_init_fn=_worker_init,
            # own generator: creating the loader must not consume the global torch RNG (exact resume)
            generator=torch.Generator().manual_seed(self.sampler.seed),
        ))

    def _record_bad_samples(self, skipped) -> None:
        for file_name, reason in skipped:
            self.bad_samples.setdefault(file_name, reason)
        if 0 <= self.max_bad_samples < len(self.bad_samples):
            listed = "; ".join(f"{f}: {r}" for f, r in list(self.bad_samples.items())[:10])
            raise RuntimeError(
                f"{len(self.bad_samples)} bad training samples exceed DATALOADER.MAX_BAD_SAMPLES "
                f"({self.max_bad_samples}); fix or remove them (tools/validate_dataset.py lists every problem), "
                f"or raise the limit. First ones: {listed}")

    def report_bad_samples(self) -> int:
        """Log how many distinct bad training samples were skipped (and which); returns the count."""
        n = len(self.bad_samples)
        if n:
            logger.warning("%d bad training sample(s) were skipped (limit DATALOADER.MAX_BAD_SAMPLES = %d): %s",
                           n, self.max_bad_samples, ", ".join(list(self.bad_samples)[:20]) +
                           (" ..." if n > 20 else ""))
        else:
            logger.info("No bad training samples were skipped")
        return n

    def __iter__(self):
        while True:
            generation = self._generation
            it = self._make_loader(self._num_batches)
            for batch in it:
                if generation != self._generation:
                    break  # state was loaded: restart at the restored batch
                self._record_bad_samples(getattr(batch, "skipped", ()))
                self._num_batches += 1
                yield batch
            del it


def build_train_loader(cfg, mapper: Optional[Callable] = None, *, dataset: Optional[List[Dict]] = None,
                       rank: Optional[int] = None, world_size: Optional[int] = None) -> TrainLoader:
    """Training loader from ``cfg``: DATASETS.TRAIN, SOLVER.IMS_PER_BATCH (total over processes),
    DATALOADER.NUM_WORKERS (-1: :func:`resolve_num_workers`) / FILTER_EMPTY_ANNOTATIONS /
    MAX_BAD_SAMPLES / DECODE_CACHE / DECODE_CACHE_MB (:mod:`~.decode_cache`, set on mappers with a ``decode_cache``
    attribute), SEED (>= 0, else a shared random seed).

    ``mapper`` defaults to ``build_dataset_mapper(cfg, is_train=True)``; ``dataset`` to
    ``get_dataset_dicts(cfg.DATASETS.TRAIN)``.
    """
    world_size = comm.get_world_size() if world_size is None else world_size
    total = int(cfg.SOLVER.IMS_PER_BATCH)
    if total <= 0 or total % world_size != 0:
        raise ValueError(f"SOLVER.IMS_PER_BATCH ({total}) must be a positive multiple of the number of "
                         f"processes ({world_size})")
    if dataset is None:
        dataset = get_dataset_dicts(cfg.DATASETS.TRAIN, filter_empty=cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS)
    if mapper is None:
        from .mappers import build_dataset_mapper

        mapper = build_dataset_mapper(cfg, is_train=True)
    seed = cfg.SEED if cfg.SEED >= 0 else None
    num_workers = resolve_num_workers(cfg.DATALOADER.NUM_WORKERS)
    if hasattr(mapper, "decode_cache") and mapper.decode_cache is None:
        from .decode_cache import build_decode_cache

        mapper.decode_cache = build_decode_cache(cfg.DATALOADER.DECODE_CACHE, cfg.DATALOADER.DECODE_CACHE_MB,
                                                 dataset, num_workers)
    loader = TrainLoader(dataset, mapper, batch_size=total // world_size, num_workers=num_workers,
                         seed=seed, rank=rank, world_size=world_size,
                         max_bad_samples=cfg.DATALOADER.MAX_BAD_SAMPLES)
    logger.info("Train loader: %d images, %d per batch per process, %d workers, seed %d",
                len(loader.dataset), loader.batch_size, loader.num_workers, loader.seed)
    return loader


class _MapDataset(torch.utils.data.Dataset):
    def __init__(self, dataset: DatasetFromList, mapper: Callable):
        self.dataset = dataset
        self.mapper = mapper

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, idx: int) -> Dict:
        d = self.dataset[idx]
        out = self.mapper(d)
        if out is None:
            raise RuntimeError(f"The test mapper returned None for {d.get('file_name')}; test samples cannot be skipped")
        return out


def build_test_loader(cfg, dataset_name: Union[str, List[Dict]], mapper: Optional[Callable] = None,
                      batch_size: Optional[int] = None, num_workers: Optional[int] = None,
                      rank: Optional[int] = None, world_size: Optional[int] = None) -> DataLoader:
    """Inference loader over one dataset (a registered name or a list of dicts): each rank gets a
    contiguous shard (:class:`~.samplers.InferenceSampler`), batches of ``batch_size``
    (default TEST.IMS_PER_BATCH) as ``list[dict]``. ``mapper`` defaults to ``InferenceMapper(cfg)``."""
    dicts = get_dataset_dicts(dataset_name) if isinstance(dataset_name, str) else list(dataset_name)
    if mapper is None:
        from .mappers import InferenceMapper

        mapper = InferenceMapper(cfg)
    batch_size = int(cfg.TEST.IMS_PER_BATCH if batch_size is None else batch_size)
    num_workers = resolve_num_workers(cfg.DATALOADER.NUM_WORKERS if num_workers is None else num_workers)
    dataset = _MapDataset(DatasetFromList(dicts, copy=False), mapper)
    sampler = InferenceSampler(len(dataset), rank=rank, world_size=world_size)
    batch_sampler = torch.utils.data.BatchSampler(sampler, batch_size, drop_last=False)
    return DataLoader(dataset, batch_sampler=batch_sampler, num_workers=num_workers,
                      collate_fn=trivial_batch_collator, generator=torch.Generator().manual_seed(0))
