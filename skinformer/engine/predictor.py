"""DefaultPredictor: a trained model for notebooks and scripts, one image (or a list) in, output dicts out."""
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from skinformer.checkpoint import DetectionCheckpointer
from skinformer.config import CfgNode
from skinformer.data.catalog import MetadataCatalog
from skinformer.data.transforms import AugmentationList, apply_augmentations, build_augmentation
from skinformer.structures.label_space import LabelSpace

__all__ = ["DefaultPredictor"]

_INPUT_FORMATS = {"RGB": lambda img: img, "BGR": lambda img: img[:, :, ::-1]}


class DefaultPredictor:
    """Model + ``MODEL.WEIGHTS`` in eval mode for notebooks and scripts.

    ``predictor(image)`` returns the output dict of one image, ``predictor([img1, img2, ...])``
    a list of them, computed in batches of ``batch_size`` (default ``TEST.IMS_PER_BATCH``).
    Each dict holds the model's outputs at the image's own size: ``"sem_seg"`` (float ``K×H×W``
    class probabilities) and / or ``"instances"``; with ``"sem_seg"`` also ``"mask"``, the
    ``H×W`` int64 label map of the decision rule of :attr:`label_space`
    (:meth:`~skinformer.structures.label_space.LabelSpace.labels_from_scores`: ``0..K-1`` classes,
    ``K`` = background when it is not a class; ``threshold`` defaults to ``TEST.THRESHOLD``).

    ``label_space`` is the test dataset's (``DATASETS.TEST[0]``) or, without one, ``K`` =
    ``MODEL.SEM_SEG_HEAD.NUM_CLASSES`` classes named ``class 0``, ... with background no class.

    Images are ``H×W×3`` uint8 in ``INPUT.FORMAT`` channel order (RGB unless set to BGR, e.g.
    for ``cv2.imread`` images), of any sizes; they are resized with the test mapper's augmentations
    (:func:`~skinformer.data.transforms.build_augmentation`: ``INPUT.FIXED_SIZE`` when set, else
    shortest edge ``INPUT.MIN_SIZE_TEST``, longest at most ``INPUT.MAX_SIZE_TEST``; none under
    ``TEST.AUG`` or ``TEST.SLIDING_WINDOW.ORIGINAL_RESOLUTION``). ``TEST.AUG.ENABLED`` runs
    test-time augmentation, ``TEST.SLIDING_WINDOW`` windowed inference.
    """

    def __init__(self, cfg: CfgNode, batch_size: Optional[int] = None, threshold: Optional[float] = None):
        # modeling (timm, torchvision) loads on first use: importing skinformer.engine stays light
        from skinformer.modeling.meta_arch.build import build_model
        from skinformer.modeling.test_time_augmentation import build_inference_model

        self.cfg = cfg.clone()
        if cfg.INPUT.FORMAT not in _INPUT_FORMATS:
            raise ValueError(f"INPUT.FORMAT must be one of {sorted(_INPUT_FORMATS)}, got '{cfg.INPUT.FORMAT}'")
        self.model = build_model(self.cfg)
        self.model.eval()
        self.metadata = MetadataCatalog.get(cfg.DATASETS.TEST[0]) if cfg.DATASETS.TEST else None
        unnamed = None if self.metadata is not None and self.metadata.get("classes", None) is not None else [
            f"class {i}" for i in range(cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES)]
        self.label_space = LabelSpace.from_metadata(
            self.metadata or {}, classes=unnamed, threshold=cfg.TEST.THRESHOLD if threshold is None else threshold,
            multi_label=bool(getattr(self.model, "multilabel_on", False)))
        # predictions from a partly random model would be silently wrong
        DetectionCheckpointer(self.model, save_to_disk=False).load(
            cfg.MODEL.WEIGHTS, source="MODEL.WEIGHTS", strict=not cfg.MODEL.ALLOW_PARTIAL_WEIGHTS)
        self.inference_model = build_inference_model(self.cfg, self.model)
        self.input_format = cfg.INPUT.FORMAT
        self.augmentations = AugmentationList(build_augmentation(self.cfg, is_train=False))
        self.batch_size = int(batch_size or cfg.TEST.IMS_PER_BATCH or 1)

    @property
    def threshold(self) -> float:
        """The decision threshold of :attr:`label_space` (``TEST.THRESHOLD`` unless given)."""
        return self.label_space.threshold

    def _to_input(self, original_image: np.ndarray, index: int) -> Dict[str, Any]:
        original_image = np.asarray(original_image)
        if original_image.ndim != 3 or original_image.shape[2] != 3 or original_image.dtype != np.uint8:
            raise ValueError(f"Image {index}: expected an H×W×3 uint8 array, got shape {original_image.shape} "
                             f"dtype {original_image.dtype}")
        rgb = _INPUT_FORMATS[self.input_format](original_image)
        h, w = rgb.shape[:2]
        # test-time resizes are deterministic; the seed only satisfies the API
        image = apply_augmentations(self.augmentations, rgb, rng=0)[0].image
        return {"image": torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1))), "height": h, "width": w}

    def _add_mask(self, output: Dict[str, Any]) -> Dict[str, Any]:
        # multi-label maps are thresholded per class by the caller; one label map cannot hold them
        if "sem_seg" in output and not self.label_space.multi_label:
            output["mask"] = self.label_space.labels_from_scores(output["sem_seg"].float().cpu())
        return output

    def __call__(self, images):
        """One ``H×W×3`` image -> one output dict; a list of images -> a list of dicts."""
        single = isinstance(images, np.ndarray) and images.ndim == 3
        batch = [images] if single else list(images)
        outputs: List[Dict[str, Any]] = []
        with torch.no_grad():
            for start in range(0, len(batch), self.batch_size):
                inputs = [self._to_input(img, start + k) for k, img in enumerate(batch[start: start + self.batch_size])]
                outputs += [self._add_mask(dict(o)) for o in self.inference_model(inputs)]
        return outputs[0] if single else outputs
