"""Seg-VoFo registration: JSON split lists, gray-value encoded colour masks, 7 classes with background."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from skinformer.config import get_cfg
from skinformer.data.catalog import DatasetCatalog, MetadataCatalog
from skinformer.data.datasets import vofo
from skinformer.data.datasets.utils import DatasetNotFoundError
from skinformer.data.mappers import build_dataset_mapper
from skinformer.data.mask_io import DataFileError, read_sem_seg

H, W = 24, 32
# RGB colours whose PIL "L" luma are the gray values of the classes (L = (299 R + 587 G + 114 B) / 1000)
_COLOR_OF_CLASS = {}


def _luma(rgb):
    return int(np.asarray(Image.fromarray(np.array([[rgb]], np.uint8)).convert("L"))[0, 0])


def _find_colours():
    # saturated colours (channels differ by > 60) whose luma hits each gray value exactly
    for gray, cls in vofo.VOFO_GRAY_VALUES.items():
        if gray == 0:
            _COLOR_OF_CLASS[cls] = (0, 0, 0)
            continue
        _COLOR_OF_CLASS[cls] = next(
            (r, g, b) for r in (255, 0, 128, 200) for b in (0, 255, 128) for g in range(256)
            if _luma((r, g, b)) == gray and max(r, g, b) - min(r, g, b) > 60
        )


_find_colours()


def _label_map():
    lab = np.zeros((H, W), np.int64)
    for c in range(1, 7):
        lab[2 + 3 * (c - 1):5 + 3 * (c - 1), 2 + 4 * c:6 + 4 * c] = c
    return lab


def _write_mask(path, lab):
    rgb = np.zeros((H, W, 3), np.uint8)
    for c, col in _COLOR_OF_CLASS.items():
        rgb[lab == c] = col
    Image.fromarray(rgb).save(path)


def _vofo(root):
    base = os.path.join(root, "vofo")
    os.makedirs(os.path.join(base, "img"))
    os.makedirs(os.path.join(base, "ann"))
    for k in range(2):
        Image.fromarray(np.full((H, W, 3), 60 + k, np.uint8)).save(os.path.join(base, "img", f"v{k}.jpg"))
        _write_mask(os.path.join(base, "ann", f"v{k}.png"), _label_map())
    for split in ("train", "val", "test"):
        with open(os.path.join(base, f"vofo_sem_{split}.json"), "w") as f:
            json.dump({"images": [{"id": k, "file_name": f"img/v{k}.jpg", "mask_name": f"ann/v{k}.png"}
                                  for k in range(2)]}, f)
    return base


def test_colours_really_are_colour():
    assert all(max(c) - min(c) > 60 for k, c in _COLOR_OF_CLASS.items() if k)


def test_vofo_found_loaded_decoded_and_mapped(tmp_path, use_root):
    _vofo(tmp_path)
    use_root("vofo", tmp_path)
    dicts = DatasetCatalog.get("vofo_sem_seg_train")
    assert [d["image_id"] for d in dicts] == [0, 1] and (dicts[0]["height"], dicts[0]["width"]) == (H, W)
    meta = MetadataCatalog.get("vofo_sem_seg_train")
    assert meta.classes == ["background", "R_Vofo", "R_Arytenoid", "Benign_Les", "Malignant_les", "L_Vofo",
                            "L_Arytenoid"]
    assert meta.has_background_class is True and meta.evaluator_type == "sem_seg"
    assert meta.mask_encoding == "gray_values"
    assert meta.gray_values == {0: 0, 147: 1, 111: 2, 230: 3, 104: 4, 124: 5, 127: 6}
    assert meta.palette[2] == [255, 165, 0] and meta.palette[6] == [148, 0, 211] and len(meta.palette) == 7
    assert (read_sem_seg(dicts[0]["sem_seg_file_name"], meta) == _label_map()).all()

    cfg = get_cfg()
    cfg.DATASETS.TRAIN = ("vofo_sem_seg_train",)
    cfg.INPUT.MIN_SIZE_TRAIN = (H,)
    cfg.INPUT.CROP.ENABLED = False
    cfg.INPUT.RANDOM_FLIP = "none"
    out = build_dataset_mapper(cfg, is_train=True)(dict(dicts[0], _aug_seed=0))
    assert (out["sem_seg"].numpy() == _label_map()).all()
    assert out["instances"].gt_classes.tolist() == list(range(7))


def test_unknown_gray_value_names_file_and_value(tmp_path, use_root):
    base = _vofo(tmp_path)
    bad = os.path.join(base, "ann", "v1.png")
    rgb = np.asarray(Image.open(bad)).copy()
    rgb[0, 0] = (200, 200, 200)  # luma 200: no class (e.g. anti-aliasing)
    Image.fromarray(rgb).save(bad)
    use_root("vofo", tmp_path)
    d = DatasetCatalog.get("vofo_sem_seg_val")[1]
    with pytest.raises(DataFileError) as e:
        read_sem_seg(d["sem_seg_file_name"], MetadataCatalog.get("vofo_sem_seg_val"))
    assert "v1.png" in str(e.value) and "200" in str(e.value)


def test_missing_json_and_missing_file(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="vofo_sem_test.json"):
        vofo.load_vofo(str(tmp_path), "test")
    base = _vofo(tmp_path)
    os.remove(os.path.join(base, "img", "v1.jpg"))
    with pytest.raises(DataFileError, match="v1.jpg"):
        vofo.load_vofo(str(tmp_path), "train")
