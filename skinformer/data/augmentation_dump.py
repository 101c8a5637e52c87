"""Write augmented training samples to a folder, to inspect an augmentation pipeline."""
import logging
import os
from typing import Dict, List, Optional

import numpy as np
from PIL import Image
from tqdm import tqdm

__all__ = ["dump_augmented_samples"]

logger = logging.getLogger(__name__)


def dump_augmented_samples(cfg, num: int, output_dir: str, dataset_name: Optional[str] = None,
                           seed: int = 0) -> List[Dict[str, str]]:
    """Run the training mapper of ``cfg`` (``INPUT.*`` augmentations, ``build_dataset_mapper``) on
    ``num`` samples of ``dataset_name`` (default ``DATASETS.TRAIN[0]``), cycling through the dataset,
    with per-sample seeds ``seed + i``, and write for sample ``i``:

    * ``{i:04d}_image.png``: the augmented RGB image;
    * ``{i:04d}_mask.png``: the augmented label map (uint8; values as the model sees them, the
      ignore label included) for semantic data, or ``{i:04d}_mask_<class>.png`` (0/255) per class
      for multi-label data.

    Returns one ``{"image": path, "masks": [paths]}`` per sample.
    """
    from skinformer.data.build import get_dataset_dicts
    from skinformer.data.mappers import build_dataset_mapper

    name = dataset_name or cfg.DATASETS.TRAIN[0]
    dicts = get_dataset_dicts([name])
    if not dicts:
        raise ValueError(f"Dataset '{name}' is empty; nothing to dump")
    mapper = build_dataset_mapper(cfg, is_train=True)
    from skinformer.data.catalog import MetadataCatalog

    classes = list(MetadataCatalog.get(name).classes)
    os.makedirs(output_dir, exist_ok=True)
    written = []
    for i in tqdm(range(int(num)), desc="augmented samples"):
        d = dict(dicts[i % len(dicts)], _aug_seed=int(seed) + i, dataset_name=name)
        out = mapper(d)
        if out is None:
            logger.warning(f"sample {i} ({d['file_name']}) could not be read; skipped")
            continue
        stem = os.path.join(output_dir, f"{i:04d}")
        image = out["image"].permute(1, 2, 0).numpy().astype(np.uint8)
        if cfg.INPUT.FORMAT == "BGR":
            image = image[..., ::-1]
        Image.fromarray(np.ascontiguousarray(image)).save(stem + "_image.png")
        masks = []
        if "label_masks" in out:
            for k, c in enumerate(classes):
                p = f"{stem}_mask_{c}.png"
                Image.fromarray(out["label_masks"][k].numpy().astype(np.uint8) * 255).save(p)
                masks.append(p)
        elif "sem_seg" in out:
            p = stem + "_mask.png"
            Image.fromarray(out["sem_seg"].numpy().clip(0, 255).astype(np.uint8)).save(p)
            masks.append(p)
        written.append({"image": stem + "_image.png", "masks": masks})
    logger.info(f"Wrote {len(written)} augmented samples of '{name}' to {output_dir}")
    return written
