import os
import shutil

import numpy as np
import pytest
from PIL import Image

from skinformer.data.catalog import DatasetCatalog
from skinformer.demo.annotate import Annotator


def _folder(tmp_path, n=2):
    d = tmp_path / "images"
    d.mkdir()
    for r in DatasetCatalog.get("synthetic_lesion_val")[:n]:
        shutil.copy(r["file_name"], d)
    return d


def test_layers_to_index_mask_and_back(tmp_path):
    d = _folder(tmp_path, 1)
    ann = Annotator(str(d), str(tmp_path / "labels"), classes=["skin", "lesion", "hair"], background_value=0)
    h, w = np.asarray(Image.open(ann.files[0])).shape[:2]
    labels = np.full((h, w), -1)
    labels[10:20, 10:30] = 1
    labels[40:45, :] = 2
    path = ann.save(0, [ann.layer(labels)])
    assert os.path.basename(path).endswith("_mask.png")
    saved = np.asarray(Image.open(path))
    assert (saved[10:20, 10:30] == 1).all() and (saved[40:45] == 2).all() and saved[0, 0] == 0
    assert (ann.load_labels(0) == labels).all()  # skin (0) == background value: unpainted on reload
    with pytest.raises(ValueError, match="does not match the image"):
        ann.save(0, [np.zeros((3, 3, 4), np.uint8)])


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        Annotator(str(tmp_path / "nope"))


def test_registered_dataset_name_opens_its_images(tmp_path):
    ann = Annotator("synthetic_lesion_val", str(tmp_path))
    assert len(ann.files) == len(DatasetCatalog.get("synthetic_lesion_val"))
    assert os.path.dirname(ann.mask_path(0)) == str(tmp_path)


@pytest.mark.slow
def test_annotation_app_over_http(gradio_app, tmp_path):
    from gradio_client import handle_file

    d = _folder(tmp_path, 2)
    labels_dir = tmp_path / "labels"
    client = gradio_app(["demo/annotate.py", "--images", str(d), "--labels", str(labels_dir)])
    files = sorted(os.listdir(d))
    image = np.asarray(Image.open(d / files[0]).convert("RGB"))
    h, w = image.shape[:2]

    value, caption, index = client.predict(0, api_name="/show")
    assert index == 0 and files[0] in caption and "no mask yet" in caption
    assert (np.asarray(Image.open(value["background"]).convert("RGB")) == image).all()

    # paint a rectangle in the brush colour, then erase part of it (alpha 0), and save
    layer = np.zeros((h, w, 4), np.uint8)
    layer[20:60, 30:90] = (220, 20, 60, 255)
    layer[20:60, 30:40, 3] = 0
    layer_file = tmp_path / "layer.png"
    Image.fromarray(layer).save(layer_file)
    editor = {"background": handle_file(value["background"]), "layers": [handle_file(str(layer_file))],
              "composite": handle_file(value["background"])}
    status = client.predict(0, editor, api_name="/save")
    mask_file = labels_dir / (os.path.splitext(files[0])[0] + "_mask.png")
    assert str(mask_file) in status
    mask = np.asarray(Image.open(mask_file))
    expected = np.zeros((h, w), np.uint8)
    expected[20:60, 40:90] = 255
    assert (mask == expected).all()

    _, caption, index = client.predict(0, api_name="/next")
    assert index == 1 and files[1] in caption
    _, _, index = client.predict(1, api_name="/next")
    assert index == 1  # clamped at the last image
    value, caption, index = client.predict(1, api_name="/prev")
    assert index == 0 and "saved mask loaded" in caption
    reloaded = np.asarray(Image.open(value["layers"][0]))
    assert ((reloaded[..., 3] > 0) == (expected > 0)).all()
