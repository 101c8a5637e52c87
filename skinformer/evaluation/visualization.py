"""Overlay pictures of a model's predictions on a dataset, with the ground-truth contour.

:func:`write_overlays` runs a model over a test loader and writes, for the first ``num_images``
images, the prediction blended over the image with the ground-truth outline
(:class:`~skinformer.utils.visualizer.Visualizer`) as ``<output_dir>/<stem>.png``, and logs the
same pictures to TensorBoard as ``vis/<stem>``. The ground truth is read from the dataset's
registered dicts at the original resolution (test mappers may drop it from the model inputs).
"""
import logging
import os
from typing import Callable, Dict, List, Optional

import numpy as np
import torch
from torch import nn

from skinformer.data.mask_io import read_image
from skinformer.utils.visualizer import Visualizer, save_image

from .evaluator import inference_context

__all__ = ["write_overlays", "dataset_ground_truth"]

logger = logging.getLogger(__name__)


def dataset_ground_truth(dataset_name: str, vis: Visualizer) -> Callable[[str], Optional[np.ndarray]]:
    """A function ``file_name -> ground truth`` for :meth:`Visualizer.draw`: an ``H×W`` label map
    for semantic data, a ``K×H×W`` bool stack for multi-label data, None for an image without
    ground truth (or one that is not in the dataset)."""
    from skinformer.data.catalog import DatasetCatalog

    records: Dict[str, dict] = {d["file_name"]: d for d in DatasetCatalog.get(dataset_name)}

    def ground_truth(file_name: str):
        record = records.get(file_name)
        if record is None:
            return None
        if "sem_seg_file_name" in record:
            return vis.label_space.decode(record["sem_seg_file_name"])
        if "label_file_names" in record:
            return np.stack([vis.label_space.decode_binary(f) for f in record["label_file_names"]])
        return None

    return ground_truth


def write_overlays(model: nn.Module, data_loader, dataset_name: str, output_dir: str, num_images: int, *,
                   threshold: float, inference_model: Optional[nn.Module] = None,
                   tensorboard_dir: Optional[str] = None) -> List[str]:
    """Write overlays of the first ``num_images`` images of ``data_loader``; return their paths.

    Args:
        model: the model, put in eval mode for the run and restored to its previous mode after.
        data_loader: yields lists of mapped dicts (``file_name`` is read again for the picture,
            at its original size).
        dataset_name: registered dataset of the loader (metadata, ground truth).
        output_dir: folder of the PNGs.
        num_images: how many overlays to write (0 or less: none).
        threshold: the decision threshold of the prediction fill (``TEST.THRESHOLD``).
        inference_model: what is called on each batch (e.g. the test-time-augmentation wrapper of
            ``model``); default ``model``.
        tensorboard_dir: where to write the TensorBoard images when no event storage is active
            (during training they go to the storage, written with the scalars); None: not logged.
    """
    if num_images <= 0:
        return []
    from skinformer.data.catalog import MetadataCatalog

    meta = MetadataCatalog.get(dataset_name)
    vis = Visualizer(meta, multi_label=_is_multi_label(meta, dataset_name), threshold=threshold)
    ground_truth = dataset_ground_truth(dataset_name, vis)
    predict = inference_model if inference_model is not None else model
    written: List[str] = []
    tb = _OverlayTensorboard(tensorboard_dir)
    try:
        with inference_context(model), torch.no_grad():
            for batch in data_loader:
                for inp, out in zip(batch, predict(batch)):
                    canvas = vis.draw(read_image(inp["file_name"]), out, ground_truth(inp["file_name"]))
                    stem = os.path.splitext(os.path.basename(inp["file_name"]))[0]
                    path = os.path.join(output_dir, f"{stem}.png")
                    save_image(path, canvas)
                    tb.add(f"vis/{stem}", canvas)
                    written.append(path)
                    if len(written) >= num_images:
                        break
                if len(written) >= num_images:
                    break
    finally:
        tb.close()
    logging.getLogger("skinformer").info("Wrote %d overlay images to %s", len(written), output_dir)
    return written


def _is_multi_label(meta, dataset_name: str) -> bool:
    if meta.get("multi_label", False):
        return True
    from skinformer.data.catalog import DatasetCatalog

    return any("label_file_names" in d for d in DatasetCatalog.get(dataset_name))


class _OverlayTensorboard:
    """Overlays for TensorBoard: queued on the event storage during training (the
    TensorboardXWriter writes them with the scalars), else written to ``log_dir`` directly."""

    def __init__(self, log_dir: Optional[str]):
        from skinformer.utils.events import get_event_storage, has_event_storage

        self.storage = get_event_storage() if has_event_storage() else None
        self.log_dir = log_dir
        self.writer = None

    def add(self, name: str, image_hwc: np.ndarray) -> None:
        chw = np.ascontiguousarray(np.asarray(image_hwc).transpose(2, 0, 1))
        if self.storage is not None:
            self.storage.put_image(name, chw)
            return
        if not self.log_dir:
            return
        if self.writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(self.log_dir)
        self.writer.add_image(name, chw, 0)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
