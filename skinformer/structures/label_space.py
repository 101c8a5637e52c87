"""The label space of a dataset: what the model's ``sem_seg`` channels mean and how scores become labels.

A :class:`LabelSpace` is the one place that knows

* the ``classes`` (``K`` channels), the ``ignore_label``, and the *background rule*: background is
  one of the classes (``background_is_class``, metadata ``has_background_class``, at
  ``background_index``) or it is "no class", label ``K`` in decoded label maps;
* whether the data are *multi-label* (each class an independent mask, metadata ``mapper`` =
  ``MultiLabelMapper``);
* how mask files are encoded (``mask_encoding``, ``gray_values``, ``mat_key``);
* the probability ``threshold`` of the decision rule (config ``TEST.THRESHOLD``).

It is built from dataset metadata by :meth:`LabelSpace.from_metadata` (the only place where
metadata defaults are applied) or from a config by :meth:`LabelSpace.from_config`.

Decision rule (scores ``K×H×W``, probabilities):

* background is a class: ``argmax_c``;
* background is no class: ``argmax_c`` where ``max_c score > threshold``, else ``K``
  (for ``K == 1``: ``score > threshold`` -> 0, else 1);
* multi-label: every class on its own, ``score > threshold``.
"""
from dataclasses import dataclass, field, replace
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch

__all__ = ["LabelSpace", "labels_from_scores", "foreground_from_scores", "multilabel_from_scores"]

#: metadata defaults; applied by :meth:`LabelSpace.from_metadata` and nowhere else
DEFAULT_IGNORE_LABEL = 255
DEFAULT_MASK_ENCODING = "binary"
DEFAULT_MAT_KEY = "smgt"
DEFAULT_THRESHOLD = 0.5

Scores = Union[torch.Tensor, np.ndarray]


def _as_tensor(scores: Scores) -> torch.Tensor:
    return scores if isinstance(scores, torch.Tensor) else torch.from_numpy(np.asarray(scores))


def _check_scores(scores: torch.Tensor) -> None:
    if scores.dim() != 3:
        raise ValueError(f"sem_seg scores must be K×H×W, got shape {tuple(scores.shape)}")


def labels_from_scores(scores: torch.Tensor, has_background_class: bool,
                       threshold: float = DEFAULT_THRESHOLD) -> torch.Tensor:
    """Semantic scores ``K×H×W`` -> label map ``H×W`` (int64) under the decision rule above."""
    _check_scores(scores)
    num_classes = scores.shape[0]
    if has_background_class:
        return scores.argmax(dim=0)
    if num_classes == 1:
        # one comparison instead of max + argmax (the hot path of binary lesion/polyp data)
        return (~(scores[0] > threshold)).long()
    best, idx = scores.max(dim=0)
    return torch.where(best > threshold, idx, torch.full_like(idx, num_classes))


def foreground_from_scores(scores: torch.Tensor, has_background_class: bool, threshold: float = DEFAULT_THRESHOLD,
                           background_index: int = 0) -> torch.Tensor:
    """Foreground (any non-background class) of semantic scores ``K×H×W`` as bool ``H×W``:
    ``max_c score > threshold`` without a background class, ``argmax != background_index`` with one."""
    _check_scores(scores)
    if has_background_class:
        return scores.argmax(dim=0) != background_index
    if scores.shape[0] == 1:
        return scores[0] > threshold
    return scores.amax(dim=0) > threshold


def multilabel_from_scores(scores: torch.Tensor, threshold: float = DEFAULT_THRESHOLD) -> torch.Tensor:
    """Multi-label decision: each class on its own, ``scores > threshold`` (bool ``K×H×W``)."""
    return scores > threshold


@dataclass(frozen=True)
class LabelSpace:
    """Classes, background rule, ignore label, multi-label flag, mask encoding and threshold of a dataset.

    Use :meth:`from_metadata` / :meth:`from_config` rather than the constructor, so that metadata
    defaults are applied in one place.
    """

    classes: Tuple[str, ...]
    ignore_label: int = DEFAULT_IGNORE_LABEL
    background_is_class: bool = False
    background_index: int = 0
    multi_label: bool = False
    mask_encoding: str = DEFAULT_MASK_ENCODING
    gray_values: Optional[Dict[int, int]] = field(default=None, compare=False)
    mat_key: str = DEFAULT_MAT_KEY
    threshold: float = DEFAULT_THRESHOLD

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_metadata(cls, metadata: Any, *, threshold: Optional[float] = None, multi_label: Optional[bool] = None,
                      classes: Optional[Sequence[str]] = None) -> "LabelSpace":
        """From a dataset's metadata (``Metadata``, a mapping or any object with a ``get(key, default)``,
        or a ``LabelSpace``, returned as is unless ``threshold`` / ``multi_label`` / ``classes``
        override it). Missing fields get their defaults here; ``classes`` names the classes
        instead of the metadata's (which may then lack them)."""
        if isinstance(metadata, LabelSpace):
            space = metadata
        else:
            if not isinstance(metadata, Mapping) and not callable(getattr(metadata, "get", None)):
                raise TypeError(f"LabelSpace.from_metadata: expected dataset metadata, got {type(metadata).__name__}")
            if classes is None:
                classes = metadata.get("classes", None)
            if classes is None:
                raise KeyError(f"Dataset metadata {metadata.get('name', '?')!r} has no 'classes'")
            space = cls(
                classes=tuple(classes),
                ignore_label=int(metadata.get("ignore_label", DEFAULT_IGNORE_LABEL)),
                background_is_class=bool(metadata.get("has_background_class", False)),
                background_index=int(metadata.get("background_index", 0)),
                multi_label=metadata.get("mapper") == "MultiLabelMapper",
                mask_encoding=metadata.get("mask_encoding", DEFAULT_MASK_ENCODING),
                gray_values=metadata.get("gray_values"),
                mat_key=metadata.get("mat_key", DEFAULT_MAT_KEY),
            )
        changes = {}
        if classes is not None and tuple(classes) != space.classes:
            changes["classes"] = tuple(classes)
        if threshold is not None:
            changes["threshold"] = float(threshold)
        if multi_label is not None:
            changes["multi_label"] = bool(multi_label)
        return replace(space, **changes) if changes else space

    @classmethod
    def from_config(cls, cfg, dataset_name: Optional[str] = None) -> "LabelSpace":
        """Label space of ``dataset_name`` (default: the first test, else training dataset) with the
        threshold ``TEST.THRESHOLD``; multi-label also when ``INPUT.DATASET_MAPPER_NAME`` says so."""
        from skinformer.data.catalog import MetadataCatalog

        if dataset_name is None:
            names = list(cfg.DATASETS.TEST) or list(cfg.DATASETS.TRAIN)
            if not names:
                raise ValueError("LabelSpace.from_config: DATASETS.TEST and DATASETS.TRAIN are both empty")
            dataset_name = names[0]
        space = cls.from_metadata(MetadataCatalog.get(dataset_name), threshold=cfg.TEST.THRESHOLD)
        if cfg.INPUT.get("DATASET_MAPPER_NAME", "") == "MultiLabelMapper":
            space = replace(space, multi_label=True)
        return space

    def as_metadata(self) -> Dict[str, Any]:
        """The fields as a metadata-like dict (for code that takes dataset metadata)."""
        return {"classes": list(self.classes), "ignore_label": self.ignore_label,
                "has_background_class": self.background_is_class, "background_index": self.background_index,
                "mask_encoding": self.mask_encoding, "gray_values": self.gray_values, "mat_key": self.mat_key}

    def get(self, key: str, default: Any = None) -> Any:
        """Metadata-style access, so a ``LabelSpace`` can stand where metadata is read."""
        return self.as_metadata().get(key, default)

    # -- label ids ----------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        """``K``, the number of ``sem_seg`` channels."""
        return len(self.classes)

    @property
    def background_label(self) -> int:
        """The background's value in decoded label maps: ``background_index`` or ``K``."""
        return self.background_index if self.background_is_class else self.num_classes

    @property
    def num_labels(self) -> int:
        """Distinct non-ignored values of a label map: ``K``, or ``K + 1`` with "no class" background."""
        return self.num_classes if self.background_is_class else self.num_classes + 1

    @property
    def decision(self) -> str:
        """``"multi_label"``, ``"argmax"`` (background is a class) or ``"threshold"``."""
        if self.multi_label:
            return "multi_label"
        return "argmax" if self.background_is_class else "threshold"

    # -- files --------------------------------------------------------------------------------
    def decode(self, file_name: str) -> np.ndarray:
        """Decode a semantic mask file into a label map (int64 ``H×W``, see :attr:`background_label`)."""
        from skinformer.data.mask_io import read_sem_seg

        return read_sem_seg(file_name, self)

    def decode_binary(self, file_name: str) -> np.ndarray:
        """Foreground of one binary mask file (one class of multi-label data) as bool ``H×W``."""
        from skinformer.data.mask_io import read_binary_mask

        return read_binary_mask(file_name)

    # -- decision rule ------------------------------------------------------------------------
    def labels_from_scores(self, scores: Scores) -> torch.Tensor:
        """Single-label decision: ``K×H×W`` scores -> int64 ``H×W`` labels in ``0..K`` (tensor or array in)."""
        return labels_from_scores(_as_tensor(scores), self.background_is_class, self.threshold)

    def foreground(self, scores: Scores) -> torch.Tensor:
        """Bool ``H×W``: pixels of any non-background class (multi-label: of any class)."""
        scores = _as_tensor(scores)
        if self.multi_label:
            _check_scores(scores)
            return multilabel_from_scores(scores, self.threshold).any(dim=0)
        return foreground_from_scores(scores, self.background_is_class, self.threshold, self.background_index)

    def masks_from_scores(self, scores: Scores) -> torch.Tensor:
        """Bool ``K×H×W`` per-class masks: independent under multi-label, exclusive otherwise."""
        scores = _as_tensor(scores)
        _check_scores(scores)
        if self.multi_label:
            return multilabel_from_scores(scores, self.threshold)
        labels = self.labels_from_scores(scores)
        return labels.unsqueeze(0) == torch.arange(scores.shape[0], device=labels.device).view(-1, 1, 1)

    def to_submission_png(self, scores: Scores) -> Dict[str, np.ndarray]:
        """The uint8 ``H×W`` mask images to write for ``K×H×W`` scores, as ``{file suffix: image}``:
        multi-label -> one 0/255 mask per class (suffix ``_<class>``, the ISIC Task 2 naming); one
        class without a background class -> a 0/255 foreground mask (the ISIC Task 1 format);
        otherwise the label map (values ``0..K``)."""
        scores = _as_tensor(scores).float()
        if self.multi_label:
            masks = multilabel_from_scores(scores, self.threshold).cpu().numpy()
            return {f"_{name}": masks[i].astype(np.uint8) * 255 for i, name in enumerate(self.classes)}
        if self.num_classes == 1 and not self.background_is_class:
            return {"": self.foreground(scores).cpu().numpy().astype(np.uint8) * 255}
        return {"": self.labels_from_scores(scores).cpu().numpy().astype(np.uint8)}

    def __repr__(self) -> str:
        return (f"LabelSpace(classes={list(self.classes)}, background={'class ' + str(self.background_index) if self.background_is_class else 'no class (label K)'}, "
                f"ignore={self.ignore_label}, multi_label={self.multi_label}, encoding={self.mask_encoding!r}, "
                f"threshold={self.threshold})")
