import logging
import uuid

import numpy as np
import pytest
from PIL import Image

from skinformer.data.catalog import DatasetCatalog, MetadataCatalog
from skinformer.data.datasets import folder as F
from skinformer.data.datasets.utils import DatasetNotFoundError


@pytest.fixture
def name():
    n = f"fold_{uuid.uuid4().hex[:8]}"
    yield n
    for key in list(DatasetCatalog.keys()) + list(MetadataCatalog.keys()):
        if key.startswith(n):
            DatasetCatalog.remove(key)
            MetadataCatalog.remove(key)
            F._REGISTERED.pop(key, None)


def _img(path, h=10, w=12):
    Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(path)


def _mask(path, h=10, w=12):
    Image.fromarray(np.zeros((h, w), np.uint8)).save(path)


def _layout(root, split, stems, mask_stems, suffix="_segmentation.png"):
    (root / split / "images").mkdir(parents=True)
    (root / split / "masks").mkdir(parents=True)
    for s in stems:
        _img(root / split / "images" / f"{s}.jpg")
    for s in mask_stems:
        _mask(root / split / "masks" / f"{s}{suffix}")


def _yaml(path, text):
    path.write_text(text)
    return str(path)


def test_register_and_load(tmp_path, name, caplog):
    data = tmp_path / "data"
    _layout(data, "train", ["a", "b", "c", "lonely_img"], ["a", "b", "c", "lonely_mask"])
    _layout(data, "val", ["v1"], ["v1"])
    y = _yaml(tmp_path / "def.yaml", f"""
name: {name}
root: data
splits:
  train: {{images: train/images, masks: train/masks}}
  val: {{images: val/images, masks: val/masks}}
classes: [lesion]
mask_suffix: "_segmentation.png"
""")
    names = F.register_folder_datasets([y])
    assert names == [f"{name}_train", f"{name}_val"]
    with caplog.at_level(logging.WARNING):
        dicts = DatasetCatalog.get(f"{name}_train")
    assert [d["image_id"] for d in dicts] == ["a", "b", "c"]
    assert dicts[0]["sem_seg_file_name"].endswith("a_segmentation.png")
    assert (dicts[0]["height"], dicts[0]["width"]) == (10, 12)
    warnings = " ".join(r.getMessage() for r in caplog.records)
    assert "1 image(s) without a mask" in warnings and "lonely_img.jpg" in warnings
    assert "1 mask(s) without an image" in warnings and "lonely_mask_segmentation.png" in warnings
    meta = MetadataCatalog.get(f"{name}_val")
    assert meta.classes == ["lesion"] and meta.ignore_label == 255 and meta.has_background_class is False
    assert meta.evaluator_type == "isic_task1" and meta.mask_encoding == "binary" and meta.mapper == "SemanticMapper"
    # registering the same definition again (every process does it) is a no-op
    assert F.register_folder_datasets(y) == names


def test_multiclass_defaults_and_gray_values(tmp_path, name):
    _layout(tmp_path, "train", ["a"], ["a"], suffix=".png")
    y = _yaml(tmp_path / "d.yaml", f"""
name: {name}
splits: {{train: {{images: train/images, masks: train/masks}}}}
classes: [background, a, b]
has_background_class: true
mask_encoding: gray_values
gray_values: {{0: background, 147: 1, 111: b}}
""")
    F.register_folder_datasets(y)
    meta = MetadataCatalog.get(f"{name}_train")
    assert meta.evaluator_type == "sem_seg" and meta.gray_values == {0: 0, 147: 1, 111: 2}
    assert len(DatasetCatalog.get(f"{name}_train")) == 1


@pytest.mark.parametrize("body, match", [
    ("mask_sufix: .png", "unknown key 'mask_sufix'.*Did you mean 'mask_suffix'"),
    ("mask_encoding: binry", "mask_encoding.*'binry'.*did you mean 'binary'"),
    ("ignore_label: 0", "ignore_label.*0"),
    ("has_background_class: maybe", "has_background_class.*'maybe'.*true or false"),
    ("palette: [[1, 2]]", "palette"),
])
def test_bad_values_name_key_and_value(tmp_path, name, body, match):
    y = _yaml(tmp_path / "bad.yaml", f"""
name: {name}
splits: {{train: {{images: i, masks: m}}}}
classes: [lesion]
{body}
""")
    with pytest.raises(F.FolderDatasetError, match=match) as e:
        F.register_folder_datasets(y)
    assert str(tmp_path / "bad.yaml") in str(e.value)


@pytest.mark.parametrize("text, match", [
    ("splits: {train: {images: i, masks: m}}\nclasses: [x]", "missing required key 'name'"),
    ("name: n\nsplits: {train: {images: i, mask: m}}\nclasses: [x]", "unknown key 'mask' in split 'train'.*'masks'"),
    ("name: n\nsplits: {train: {images: i, masks: m}}\nclasses: lesion", "classes"),
    ("name: n\nsplits: {train: {images: i, masks: m}}\nclasses: [a, b]", "binary"),
    ("[1, 2]", "expected a mapping"),
])
def test_structural_errors(tmp_path, text, match):
    with pytest.raises(F.FolderDatasetError, match=match):
        F.register_folder_datasets(_yaml(tmp_path / "x.yaml", text))


def test_nothing_pairs_is_an_error(tmp_path, name):
    _layout(tmp_path, "train", ["a", "b"], ["a", "b"], suffix="_mask.png")
    y = _yaml(tmp_path / "d.yaml", f"""
name: {name}
splits: {{train: {{images: train/images, masks: train/masks}}}}
classes: [lesion]
mask_suffix: _segmentation.png
""")
    F.register_folder_datasets(y)
    with pytest.raises(F.FolderDatasetError, match="no image.*_segmentation.png.*Images found: 2.*a.jpg"):
        DatasetCatalog.get(f"{name}_train")


def test_missing_folder_names_env_var_and_path(tmp_path, name, monkeypatch):
    monkeypatch.setenv("SKINFORMER_DATASETS", str(tmp_path / "root"))
    y = _yaml(tmp_path / "d.yaml", f"""
name: {name}
root: ${{SKINFORMER_DATASETS}}/mine
splits: {{train: {{images: imgs, masks: msks}}}}
classes: [lesion]
""")
    F.register_folder_datasets(y)
    with pytest.raises(DatasetNotFoundError) as e:
        DatasetCatalog.get(f"{name}_train")
    msg = str(e.value)
    assert "SKINFORMER_DATASETS" in msg and str(tmp_path / "root" / "mine" / "imgs") in msg
    assert "datasets/README.md" in msg


def test_conflicting_redefinition_and_builtin_name(tmp_path, name):
    base = "splits: {train: {images: i, masks: m}}\nclasses: [lesion]\n"
    F.register_folder_datasets(_yaml(tmp_path / "a.yaml", f"name: {name}\n{base}"))
    with pytest.raises(F.FolderDatasetError, match="already registered with a different definition"):
        F.register_folder_datasets(_yaml(tmp_path / "b.yaml", f"name: {name}\n{base}ignore_label: 254\n"))
    with pytest.raises(F.FolderDatasetError, match="already taken"):
        F.register_folder_datasets(_yaml(tmp_path / "c.yaml", "name: synthetic_lesion\nsplits: {val: {images: i, "
                                                              "masks: m}}\nclasses: [lesion]\n"))
