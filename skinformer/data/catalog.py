"""Dataset and metadata catalogs with lazy registration.

A dataset name maps to a zero-argument function returning a list of *dataset dicts*:

* always: ``file_name`` (image path), ``height``, ``width``, ``image_id``;
* semantic data: ``sem_seg_file_name`` (mask path), decoded by the metadata's ``mask_encoding``;
* multi-label data: ``label_file_names`` (one mask path per class, in ``classes`` order);
* instance data: ``annotations`` (COCO style: ``bbox``, ``bbox_mode``, ``category_id``
  (contiguous, 0-based), ``segmentation`` as polygons or RLE).

Its *metadata* (the only place that defines them) holds:

* ``classes``: the classes the model predicts; ``len(classes)`` must equal ``MODEL.SEM_SEG_HEAD.NUM_CLASSES``;
* ``ignore_label``: label value ignored by losses and metrics (255);
* ``has_background_class``: whether background is one of ``classes`` (Seg-VoFo) or, as for
  binary lesion/polyp data, pixels of no class. Decoded label maps hold ``0..K-1`` for classes,
  ``K = len(classes)`` for background when it is not a class, and ``ignore_label`` for ignored pixels;
* ``evaluator_type`` (key of ``EVALUATOR_REGISTRY``), ``mapper`` (training mapper name),
  ``mask_encoding``, ``palette`` and dataset-specific fields (``json_file``, ``root`` ...).

Built-in names are *resolved lazily*: the first ``DatasetCatalog.get(name)`` or
``MetadataCatalog.get(name)`` in a process registers the family the name belongs to, reading
``SKINFORMER_DATASETS`` at that moment. This works in processes spawned by ``launch()``,
because nothing depends on import-time side effects. :func:`reset_lazy_resolution` undoes it, so
that the next lookup reads ``SKINFORMER_DATASETS`` again (tests, or a changed root at run time).
"""
import copy
import logging
import os
import types
from collections import UserDict
from typing import Any, Callable, Dict, Iterable, List, Optional

__all__ = [
    "DatasetCatalog", "MetadataCatalog", "Metadata", "datasets_root", "register_lazy_provider",
    "reset_lazy_resolution",
]

logger = logging.getLogger(__name__)

DATASETS_ENV = "SKINFORMER_DATASETS"

# name -> function that registers that name (and usually its whole family) when first needed
_LAZY_PROVIDERS: Dict[str, Callable[[], None]] = {}


def datasets_root() -> str:
    """Root folder of the datasets: ``$SKINFORMER_DATASETS``, default ``./datasets``."""
    return os.path.expanduser(os.environ.get(DATASETS_ENV, "datasets"))


def register_lazy_provider(names: List[str], provider: Callable[[], None]) -> None:
    """Declare that calling ``provider()`` registers every name in ``names``.

    Used by the built-in dataset families; cheap, does not touch the file system.
    """
    for n in names:
        _LAZY_PROVIDERS[n] = provider


def _resolve(name: str) -> None:
    if name in DatasetCatalog or name in _RESOLVED:
        return
    # Importing the builtin table only declares providers; it reads no files and no env vars.
    import skinformer.data.datasets  # noqa: F401

    provider = _LAZY_PROVIDERS.get(name)
    if provider is not None:
        # mark the whole family first: the provider itself calls MetadataCatalog.get(...)
        _RESOLVED.update(n for n, p in _LAZY_PROVIDERS.items() if p is provider)
        provider()


_RESOLVED: set = set()


def reset_lazy_resolution(names: Optional[Iterable[str]] = None) -> List[str]:
    """Forget that lazy providers ran and remove what they registered.

    The next ``DatasetCatalog.get`` / ``MetadataCatalog.get`` of such a name calls its provider
    again, reading ``$SKINFORMER_DATASETS`` at that moment. Meant for tests (registrations are
    process-global) and for users who point ``SKINFORMER_DATASETS`` elsewhere at run time.

    Args:
        names: the names to forget: their ``DatasetCatalog`` and ``MetadataCatalog`` entries are
            removed (whoever registered them) and their resolution is forgotten. Pass whole
            families: a provider re-registers every name of its family, and refuses names still
            registered. ``None``: every name a lazy provider has registered so far.

    Returns:
        the names that were forgotten.
    """
    names = sorted(_RESOLVED) if names is None else list(names)
    for n in names:
        DatasetCatalog.remove(n)
        MetadataCatalog.remove(n)
        _RESOLVED.discard(n)
    return names


class _DatasetCatalog(UserDict):
    """name -> function returning ``list[dict]``."""

    def register(self, name: str, func: Callable[[], List[Dict]]) -> None:
        if not callable(func):
            raise TypeError("DatasetCatalog.register needs a zero-argument function returning list[dict]")
        if name in self:
            raise KeyError(f"Dataset '{name}' is already registered; call DatasetCatalog.remove('{name}') first")
        self[name] = func

    def get(self, name: str) -> List[Dict]:
        _resolve(name)
        try:
            f = self[name]
        except KeyError as e:
            known = ", ".join(sorted(set(self.keys()) | set(_LAZY_PROVIDERS.keys())))
            raise KeyError(
                f"Dataset '{name}' is not registered. Registered and built-in names: {known}. "
                "Folder datasets can be declared in a YAML file listed in DATASETS.DEFINITIONS."
            ) from e
        return f()

    def list(self) -> List[str]:
        return sorted(set(self.keys()) | set(_LAZY_PROVIDERS.keys()))

    def remove(self, name: str) -> None:
        self.pop(name, None)

    def __str__(self):
        return f"DatasetCatalog(registered datasets: {', '.join(self.keys())})"

    __repr__ = __str__


DatasetCatalog = _DatasetCatalog()


class Metadata(types.SimpleNamespace):
    """Attributes of a dataset. Setting an attribute to a *different* value than it has raises,
    because two places defining the same metadata is a bug; use ``MetadataCatalog.remove``.
    """

    name: str = "N/A"

    def __getattr__(self, key: str) -> Any:
        if key.startswith("_"):
            raise AttributeError(key)
        raise AttributeError(
            f"Metadata of dataset '{self.name}' has no attribute '{key}'. "
            f"Available: {sorted(self.__dict__.keys())}"
        )

    def __setattr__(self, key: str, val: Any) -> None:
        try:
            old = object.__getattribute__(self, key)
        except AttributeError:
            old = _MISSING
        if old is not _MISSING and old != val and key != "name":
            raise ValueError(
                f"Attribute '{key}' of metadata '{self.name}' is already {old!r}; refusing to change it to {val!r}"
            )
        super().__setattr__(key, val)

    def as_dict(self) -> Dict[str, Any]:
        """Shallow copy of all metadata fields as a dict."""
        return copy.copy(self.__dict__)

    def set(self, **kwargs) -> "Metadata":
        """Set the given fields as attributes; returns ``self`` for chaining."""
        for k, v in kwargs.items():
            setattr(self, k, v)
        return self

    def get(self, key: str, default: Any = None) -> Any:
        """Field ``key``, or ``default`` if it is not set."""
        return self.__dict__.get(key, default)


_MISSING = object()


class _MetadataCatalog(UserDict):
    def get(self, name: str) -> Metadata:
        assert len(name)
        _resolve(name)
        if name not in self:
            self[name] = Metadata(name=name)
        return self[name]

    def remove(self, name: str) -> None:
        self.pop(name, None)

    def list(self) -> List[str]:
        return list(self.keys())


MetadataCatalog = _MetadataCatalog()
