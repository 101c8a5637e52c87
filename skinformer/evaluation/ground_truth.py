"""Finding and reading an evaluated image's ground truth at its original resolution.

Test mappers may drop the ground-truth keys from the dicts they hand to the model (detectron2's
do), so evaluators first look in the input dict and otherwise in the registered dataset's dicts,
matched by ``file_name``.

:class:`LabelMapEvaluator` is the common base of the evaluators that score ``sem_seg`` outputs
against a semantic dataset's label maps (``sem_seg``, ``isic_task1`` / ``binary``): arguments,
``from_config``, output checks and ground-truth lookup live there once.
"""
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from skinformer.data import mask_io
from skinformer.structures.label_space import LabelSpace

from .evaluator import DatasetEvaluator

__all__ = [
    "GroundTruthLookup", "read_label_map", "read_foreground", "read_binary_stack",
    "check_prediction_size", "check_scores", "LabelMapEvaluator",
]


class GroundTruthLookup:
    """Return ``input_dict[key]``, or the value of ``key`` in the dataset dict with the same
    ``file_name`` (dataset dicts are loaded lazily, once, from ``DatasetCatalog``).

    Args:
        key: e.g. ``"sem_seg_file_name"`` or ``"label_file_names"``.
        dataset_name: registered dataset to fall back to (optional).
        table: explicit ``{file_name: value}`` fallback (used instead of the catalog when given).
    """

    def __init__(self, key: str, dataset_name: Optional[str] = None, table: Optional[Dict[str, Any]] = None):
        self.key = key
        self.dataset_name = dataset_name
        self._table = table

    def _load(self) -> Dict[str, Any]:
        if self._table is None:
            self._table = {}
            if self.dataset_name is not None:
                from skinformer.data.catalog import DatasetCatalog

                for d in DatasetCatalog.get(self.dataset_name):
                    if self.key in d and "file_name" in d:
                        self._table[d["file_name"]] = d[self.key]
        return self._table

    def __call__(self, input_dict: dict) -> Any:
        if self.key in input_dict and input_dict[self.key] is not None:
            return input_dict[self.key]
        file_name = input_dict.get("file_name")
        table = self._load()
        if file_name in table:
            return table[file_name]
        where = f"dataset '{self.dataset_name}'" if self.dataset_name else "the lookup table"
        raise KeyError(
            f"No ground truth '{self.key}' for image {file_name!r} (image_id={input_dict.get('image_id')!r}): "
            f"the input dict has no '{self.key}' and {where} has no entry with that file_name"
        )


def read_label_map(file_name: str, space: LabelSpace, device: torch.device) -> torch.Tensor:
    """Label map ``H×W`` of ``file_name`` (:meth:`LabelSpace.decode`) on ``device``.

    Labels are moved as int16 (values are < 256 plus the ignore label) to cut host-to-device traffic.
    """
    arr = space.decode(file_name)
    small = arr.astype(np.int16) if arr.size and arr.min() >= -2 ** 15 and arr.max() < 2 ** 15 else arr
    return torch.from_numpy(small).to(device, non_blocking=True)


def read_foreground(file_name: str, space: LabelSpace, device: torch.device = torch.device("cpu")
                    ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Ground-truth foreground of one mask file: bool ``H×W`` (every non-ignored pixel labelled with
    a class that is not background) and the bool ``H×W`` valid mask, None when nothing can be ignored."""
    if space.mask_encoding == "binary":
        # binary files hold no ignore pixels: decode straight to a bool foreground, skipping the
        # int64 label map read_sem_seg would build (same result, less memory traffic)
        return torch.from_numpy(mask_io.read_binary_mask(file_name)).to(device, non_blocking=True), None
    gt = read_label_map(file_name, space, device)
    valid = gt != space.ignore_label
    fg = (gt >= 0) & (gt < space.num_classes) & (gt != space.background_label) & valid
    return fg, valid


def read_binary_stack(files: List[Optional[str]], shape, device: torch.device,
                      reader: Callable[[str], np.ndarray] = None) -> torch.Tensor:
    """Stack binary masks (one file per class; ``None`` = empty) into bool ``K×H×W`` on ``device``.

    Every mask must have ``shape`` (H, W); a mismatch is an error naming the file.
    """
    reader = reader or mask_io.read_binary_mask
    h, w = shape
    out = np.zeros((len(files), h, w), dtype=bool)
    for i, f in enumerate(files):
        if f is None:
            continue
        m = reader(f)
        if m.shape != (h, w):
            raise mask_io.DataFileError(
                f"{f}: mask is {m.shape[0]}×{m.shape[1]} but the prediction is {h}×{w}; predictions and "
                "ground truth must both be at the image's original resolution"
            )
        out[i] = m
    return torch.from_numpy(out).to(device, non_blocking=True)


def check_prediction_size(pred_hw, input_dict: dict, what: str = "sem_seg") -> None:
    """Predictions must be at the original resolution (``height``, ``width`` of the input dict)."""
    h, w = input_dict.get("height"), input_dict.get("width")
    if h is not None and w is not None and tuple(pred_hw) != (int(h), int(w)):
        raise ValueError(
            f"'{what}' output for {input_dict.get('file_name')!r} is {pred_hw[0]}×{pred_hw[1]} but the image is "
            f"{h}×{w}: models must return predictions at the original resolution (height, width)"
        )


def check_scores(scores: torch.Tensor, input_dict: dict, classes: Sequence[str], what: str = "classes") -> None:
    """``sem_seg`` scores must be ``K×H×W`` (one channel per entry of ``classes``, called ``what``
    in the error) at the original resolution of ``input_dict``."""
    if scores.dim() != 3 or scores.shape[0] != len(classes):
        raise ValueError(
            f"'sem_seg' output for {input_dict.get('file_name')!r} has shape {tuple(scores.shape)}; expected "
            f"{len(classes)}×H×W for {what} {list(classes)}"
        )
    check_prediction_size(scores.shape[1:], input_dict)


class LabelMapEvaluator(DatasetEvaluator):
    """Base of evaluators comparing ``{"sem_seg": K×H×W}`` scores with ``sem_seg_file_name`` label maps.

    Subclasses decorate their ``__init__`` with ``@configurable``, pass these arguments through and
    implement ``reset`` / ``process`` / ``evaluate``; :meth:`_scores_and_gt_file` and
    :meth:`_scores_at_gt_size` do the checks every ``process`` needs.
    """

    def __init__(self, *, label_space: Union[LabelSpace, Mapping[str, Any]], dataset_name: Optional[str] = None,
                 gt_table: Optional[Dict[str, str]] = None, threshold: Optional[float] = None,
                 output_dir: Optional[str] = None, device: str = "cpu", task_name: str = "sem_seg",
                 resize_to_gt: bool = False):
        """
        Args:
            label_space: classes of the ``sem_seg`` channels (``len == K``; ``["lesion"]`` for binary
                data), the background rule, ignore label and how ground-truth files are decoded: a
                :class:`~skinformer.structures.LabelSpace`, or dataset metadata / a mapping with at least
                ``classes`` (:meth:`LabelSpace.from_metadata <skinformer.structures.LabelSpace.from_metadata>`
                applies the defaults).
            dataset_name / gt_table: where to find ``sem_seg_file_name`` when the input dicts lack it.
            threshold: overrides the label space's decision threshold (``TEST.THRESHOLD``).
            output_dir: where the subclass writes its files (``None``: nothing is written).
            device: where statistics are reduced across processes (``cfg.MODEL.DEVICE``).
            task_name: key of the results (``{task_name: {metric: value}}``).
            resize_to_gt: the ground truth is at a higher resolution than the evaluated images (e.g.
                256-px copies scored against the original masks; metadata ``resize_predictions_to_gt``):
                scores of another size are resized bilinearly to the ground truth's size before the
                decision rule, so metrics are computed at the ground-truth resolution. Off: a size
                mismatch is an error.
        """
        self._space = LabelSpace.from_metadata(label_space, threshold=threshold)
        self._classes = list(self._space.classes)
        self._num_classes = len(self._classes)
        self._ignore = self._space.ignore_label
        self._gt = GroundTruthLookup("sem_seg_file_name", dataset_name, gt_table)
        self._output_dir = output_dir
        self._device = torch.device(device)
        self._task = task_name
        self._resize_to_gt = bool(resize_to_gt)
        self.reset()

    @classmethod
    def from_config(cls, cfg, dataset_name: str, output_dir: Optional[str] = None) -> Dict[str, Any]:
        """Return the constructor arguments from ``dataset_name``'s metadata and ``cfg``.

        Label space (with ``TEST.THRESHOLD``), ``MODEL.DEVICE`` and ``resize_predictions_to_gt``.
        """
        from skinformer.data.catalog import MetadataCatalog

        meta = MetadataCatalog.get(dataset_name)
        return dict(label_space=LabelSpace.from_metadata(meta, threshold=cfg.TEST.THRESHOLD),
                    dataset_name=dataset_name, output_dir=output_dir, device=cfg.MODEL.DEVICE,
                    resize_to_gt=meta.get("resize_predictions_to_gt", False))

    def _scores_and_gt_file(self, input_dict: dict, output: dict) -> Tuple[torch.Tensor, str]:
        """The checked ``K×H×W`` scores of one output and the ground-truth file of its input."""
        scores = output["sem_seg"]
        check_scores(scores, input_dict, self._classes)
        return scores, self._gt(input_dict)

    def _scores_at_gt_size(self, gt_hw, gt_file: str, input_dict: dict, scores: torch.Tensor) -> torch.Tensor:
        """``scores`` (K×H×W) at the ground truth's size ``gt_hw``: resized when ``resize_to_gt``,
        otherwise checked (a mismatch raises, naming both files)."""
        if tuple(gt_hw) == tuple(scores.shape[1:]):
            return scores
        if self._resize_to_gt:
            from skinformer.modeling.postprocessing import sem_seg_postprocess

            return sem_seg_postprocess(scores.float(), scores.shape[1:], int(gt_hw[0]), int(gt_hw[1]))
        raise ValueError(
            f"Ground truth {gt_file} is {gt_hw[0]}×{gt_hw[1]} but the prediction for "
            f"{input_dict.get('file_name')!r} is {scores.shape[1]}×{scores.shape[2]}"
        )
