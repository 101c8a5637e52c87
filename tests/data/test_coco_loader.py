"""COCO instance json loading: polygons and RLE, category mapping and the errors for bad files."""
import json
import logging
import os

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_util

from skinformer.data.catalog import DatasetCatalog, MetadataCatalog
from skinformer.data.datasets.coco import load_coco_json, register_coco_instances
from skinformer.data.datasets.utils import DatasetNotFoundError
from skinformer.data.mappers.instance import annotations_to_masks
from skinformer.data.mask_io import DataFileError

H, W = 30, 40


def _square_poly(x0, y0, x1, y1):
    return [float(v) for v in (x0, y0, x1, y0, x1, y1, x0, y1)]


def _rle(mask, compressed=True):
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    if compressed:
        return {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")}
    # uncompressed: run lengths in column-major order starting with zeros
    flat = mask.T.reshape(-1).astype(np.uint8)
    counts, cur, n = [], 0, 0
    for v in flat:
        if v == cur:
            n += 1
        else:
            counts.append(n)
            cur, n = v, 1
    counts.append(n)
    return {"size": [H, W], "counts": counts}


def _write(tmp_path, annotations, images=None, categories=None):
    img_dir = tmp_path / "imgs"
    img_dir.mkdir(exist_ok=True)
    images = images or [{"id": 1, "file_name": "a.jpg", "height": H, "width": W},
                        {"id": 2, "file_name": "b.jpg", "height": H, "width": W}]
    for im in images:
        p = img_dir / im["file_name"]
        if not p.exists():
            Image.fromarray(np.zeros((im["height"], im["width"], 3), np.uint8)).save(p)
    cats = categories or [{"id": 1, "name": "pedunculated"}, {"id": 2, "name": "sessile"}]
    js = tmp_path / "ann.json"
    js.write_text(json.dumps({"images": images, "annotations": annotations, "categories": cats}))
    return str(js), str(img_dir)


def _mask_box(y0, y1, x0, x1):
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return m


def test_polygons_and_rle_load_and_rasterise(tmp_path):
    m_rle = _mask_box(10, 20, 20, 35)
    m_unc = _mask_box(2, 6, 2, 9)
    anns = [
        {"id": 1, "image_id": 1, "category_id": 2, "segmentation": [_square_poly(2, 3, 12, 13)], "iscrowd": 0},
        {"id": 2, "image_id": 1, "category_id": 1, "segmentation": _rle(m_rle), "bbox": [20, 10, 15, 10]},
        {"id": 3, "image_id": 2, "category_id": 1, "segmentation": _rle(m_unc, compressed=False)},
    ]
    js, root = _write(tmp_path, anns)
    dicts = load_coco_json(js, root, id_map={1: 0, 2: 1})
    assert [d["image_id"] for d in dicts] == [1, 2]
    a, b = dicts
    assert a["file_name"] == os.path.join(root, "a.jpg") and (a["height"], a["width"]) == (H, W)
    assert [x["category_id"] for x in a["annotations"]] == [1, 0]
    assert a["annotations"][0]["bbox_mode"] == "XYWH_ABS"
    # uncompressed RLE is stored compressed; its bbox is computed when the json has none
    seg = b["annotations"][0]["segmentation"]
    assert isinstance(seg["counts"], str)
    assert b["annotations"][0]["bbox"] == [2.0, 2.0, 7.0, 4.0]

    masks, classes, dropped = annotations_to_masks(a["annotations"], H, W)
    assert masks.shape == (2, H, W) and classes.tolist() == [1, 0] and dropped == 0
    assert (masks[1] == m_rle).all()
    assert masks[0][3:13, 2:12].all() and not masks[0][20:, 20:].any()
    masks_b, _, _ = annotations_to_masks(b["annotations"], H, W)
    assert (masks_b[0] == m_unc).all()


def test_missing_image_is_an_error_naming_it(tmp_path):
    js, root = _write(tmp_path, [])
    os.remove(os.path.join(root, "b.jpg"))
    with pytest.raises(DataFileError) as e:
        load_coco_json(js, root, id_map={1: 0, 2: 1})
    assert "b.jpg" in str(e.value) and "ann.json" in str(e.value)


def test_unknown_category_id_is_an_error(tmp_path):
    anns = [{"id": 17, "image_id": 1, "category_id": 5, "segmentation": [_square_poly(1, 1, 5, 5)]}]
    js, root = _write(tmp_path, anns)
    with pytest.raises(DataFileError) as e:
        load_coco_json(js, root, id_map={1: 0, 2: 1})
    msg = str(e.value)
    assert "ann.json" in msg and "annotation 17" in msg and "category_id 5" in msg and "a.jpg" in msg


def test_empty_polygons_are_dropped_with_a_count(tmp_path, caplog):
    anns = [
        {"id": 1, "image_id": 1, "category_id": 1, "segmentation": []},
        {"id": 2, "image_id": 1, "category_id": 1, "segmentation": [[1.0, 2.0, 3.0, 4.0]]},  # 2 points
        {"id": 3, "image_id": 2, "category_id": 2, "segmentation": [[], _square_poly(1, 1, 6, 6)]},
    ]
    js, root = _write(tmp_path, anns)
    with caplog.at_level(logging.WARNING):
        dicts = load_coco_json(js, root, id_map={1: 0, 2: 1})
    assert dicts[0]["annotations"] == []  # the image stays: no lesion is data
    assert len(dicts[1]["annotations"]) == 1 and len(dicts[1]["annotations"][0]["segmentation"]) == 1
    assert "dropped 2 annotations" in caplog.text


def test_other_bad_files(tmp_path):
    # annotation of an image that is not in "images"
    poly = [_square_poly(1, 1, 5, 5)]
    js, root = _write(tmp_path, [{"id": 4, "image_id": 99, "category_id": 1, "segmentation": poly}])
    with pytest.raises(DataFileError, match="annotation 4 refers to image id 99"):
        load_coco_json(js, root, id_map={1: 0, 2: 1})
    # RLE of a different size than the image
    bad = {"size": [H + 1, W], "counts": _rle(_mask_box(1, 3, 1, 3))["counts"]}
    js, root = _write(tmp_path, [{"id": 5, "image_id": 1, "category_id": 1, "segmentation": bad}])
    with pytest.raises(DataFileError, match="annotation 5 RLE size"):
        load_coco_json(js, root, id_map={1: 0, 2: 1})
    # json size differs from the image file
    sub = tmp_path / "x"
    sub.mkdir()
    js, root = _write(sub, [], images=[{"id": 1, "file_name": "c.jpg", "height": H, "width": W}])
    Image.fromarray(np.zeros((H, W + 2, 3), np.uint8)).save(os.path.join(root, "c.jpg"))
    with pytest.raises(DataFileError, match="c.jpg"):
        load_coco_json(js, root, id_map={1: 0})
    # missing json -> require_path error
    with pytest.raises(DatasetNotFoundError, match="SKINFORMER_DATASETS"):
        load_coco_json(str(tmp_path / "none.json"), root, "my_set")


def test_register_coco_instances_and_categories_from_json(tmp_path):
    anns = [{"id": 1, "image_id": 1, "category_id": 2, "segmentation": [_square_poly(2, 3, 12, 13)]}]
    js, root = _write(tmp_path, anns)
    name = f"_test_coco_{tmp_path.name}"
    try:
        register_coco_instances(name, {"thing_dataset_id_to_contiguous_id": {1: 0, 2: 1},
                                       "classes": ["pedunculated", "sessile"]}, js, root)
        assert DatasetCatalog.get(name)[0]["annotations"][0]["category_id"] == 1
        assert MetadataCatalog.get(name).json_file == js
        # without an id map, the json's categories (sorted by id) define the classes
        dicts = load_coco_json(js, root, name + "_auto")
        assert MetadataCatalog.get(name + "_auto").classes == ["pedunculated", "sessile"]
        assert dicts[0]["annotations"][0]["category_id"] == 1
    finally:
        for n in (name, name + "_auto"):
            DatasetCatalog.remove(n)
            MetadataCatalog.remove(n)
