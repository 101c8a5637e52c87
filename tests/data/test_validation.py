import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from skinformer.config import get_cfg
from skinformer.data.catalog import DatasetCatalog, Metadata, MetadataCatalog
from skinformer.data.mask_io import DataFileError
from skinformer.data.validation import validate_dataset_dicts, validate_first_images

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _img(path, h=10, w=12):
    Image.fromarray(np.full((h, w, 3), 100, np.uint8)).save(path)
    return str(path)


def _mask(path, arr):
    Image.fromarray(np.asarray(arr, dtype=np.uint8)).save(path)
    return str(path)


def _d(img, mask, h=10, w=12):
    return {"file_name": img, "sem_seg_file_name": mask, "height": h, "width": w, "image_id": os.path.basename(img)}


@pytest.fixture
def binary_fixture(tmp_path):
    fg = np.zeros((10, 12), np.uint8)
    fg[2:6, 3:8] = 1
    ok = _d(_img(tmp_path / "ok.png"), _mask(tmp_path / "ok_m.png", fg))
    d255 = _d(_img(tmp_path / "b255.png"), _mask(tmp_path / "b255_m.png", fg * 255))
    empty = _d(_img(tmp_path / "empty.png"), _mask(tmp_path / "empty_m.png", fg * 0))
    trunc = tmp_path / "trunc.png"
    _img(trunc)
    trunc.write_bytes(trunc.read_bytes()[:40])
    truncated = _d(str(trunc), _mask(tmp_path / "trunc_m.png", fg))
    mism = _d(_img(tmp_path / "mism.png"), _mask(tmp_path / "mism_m.png", np.zeros((8, 12))))
    declared = _d(_img(tmp_path / "decl.png"), _mask(tmp_path / "decl_m.png", fg), h=20, w=12)
    missing_mask = _d(_img(tmp_path / "nomask.png"), str(tmp_path / "does_not_exist.png"))
    return {"ok": ok, "d255": d255, "empty": empty, "truncated": truncated, "mism": mism, "declared": declared,
            "missing_mask": missing_mask}


def _files(report, kind, notes=False):
    return [f for f, _ in (report.notes if notes else report.errors).get(kind, [])]


def test_binary_dataset_problems(binary_fixture):
    meta = Metadata(name="v", classes=["lesion"], ignore_label=255, has_background_class=False, mask_encoding="binary")
    f = binary_fixture
    report = validate_dataset_dicts(list(f.values()), meta, name="v", progress=False)
    assert report.num_checked == 7 and not report.ok
    assert _files(report, "unreadable_image") == [f["truncated"]["file_name"]]
    assert _files(report, "unreadable_mask") == [f["missing_mask"]["sem_seg_file_name"]]
    assert _files(report, "size_mismatch") == [f["mism"]["sem_seg_file_name"]]
    assert f["mism"]["file_name"] in report.errors["size_mismatch"][0][1]
    assert _files(report, "declared_size") == [f["declared"]["file_name"]]
    assert f["d255"]["sem_seg_file_name"] in _files(report, "binary_0_255", notes=True)
    assert f["empty"]["sem_seg_file_name"] in _files(report, "empty_mask", notes=True)
    text = report.format()
    assert "ERROR size_mismatch" in text and "note binary_0_255" in text
    clean = validate_dataset_dicts([f["ok"], f["d255"], f["empty"]], meta, progress=False)
    assert clean.ok


def test_index_dataset_problems(tmp_path):
    meta = Metadata(name="i", classes=["a", "b"], ignore_label=255, has_background_class=True, mask_encoding="index")
    good = np.zeros((10, 12), np.uint8)
    good[:2] = 1
    good[5] = 255
    out_of_range = good.copy()
    out_of_range[3, 3] = 7
    equal_k = good.copy()
    equal_k[4, 4] = 2  # == NUM_CLASSES, not allowed when background is a class
    rgb = np.zeros((10, 12, 3), np.uint8)
    rgb[..., 0] = 1
    dicts = [
        _d(_img(tmp_path / "g.png"), _mask(tmp_path / "g_m.png", good)),
        _d(_img(tmp_path / "o.png"), _mask(tmp_path / "o_m.png", out_of_range)),
        _d(_img(tmp_path / "k.png"), _mask(tmp_path / "k_m.png", equal_k)),
        _d(_img(tmp_path / "r.png"), _mask(tmp_path / "r_m.png", rgb)),
    ]
    report = validate_dataset_dicts(dicts, meta, progress=False)
    assert _files(report, "label_values") == [dicts[1]["sem_seg_file_name"], dicts[2]["sem_seg_file_name"]]
    assert "NUM_CLASSES" in report.errors["label_values"][1][1]
    assert _files(report, "rgb_mask") == [dicts[3]["sem_seg_file_name"]]
    assert report.num_errors == 3


@pytest.fixture
def registered(binary_fixture):
    names = {"val_good": ["ok", "d255"], "val_bad": ["ok", "mism", "truncated"]}
    for n, keys in names.items():
        DatasetCatalog.register(n, lambda keys=keys: [dict(binary_fixture[k]) for k in keys])
        MetadataCatalog.get(n).set(classes=["lesion"], ignore_label=255, has_background_class=False,
                                   mask_encoding="binary")
    yield
    for n in names:
        DatasetCatalog.remove(n)
        MetadataCatalog.remove(n)


def test_validate_first_images(registered):
    cfg = get_cfg()
    cfg.DATASETS.TRAIN = ("val_good",)
    assert validate_first_images(cfg)[0].ok
    cfg.DATASETS.TRAIN = ("val_bad",)
    with pytest.raises(DataFileError, match="(?s)unreadable_image.*trunc.png.*size_mismatch.*mism_m.png"):
        validate_first_images(cfg)
    cfg.DATASETS.VALIDATE_FIRST_N = 1  # only the good first image is checked
    validate_first_images(cfg)
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = 2
    with pytest.raises(DataFileError, match="NUM_CLASSES is 2"):
        validate_first_images(cfg)


def _run_tool(args, env_extra=None):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.update(env_extra or {})
    return subprocess.run([sys.executable, os.path.join(REPO, "tools", "validate_dataset.py"), *args],
                          capture_output=True, text=True, env=env, timeout=300)


def test_tool_exit_codes(tmp_path):
    for split in ("good", "bad"):
        (tmp_path / split / "im").mkdir(parents=True)
        (tmp_path / split / "ma").mkdir(parents=True)
        _img(tmp_path / split / "im" / "x.png")
        _mask(tmp_path / split / "ma" / "x.png", np.zeros((10 if split == "good" else 7, 12)))
    y = tmp_path / "def.yaml"
    y.write_text("name: tooltest\nsplits: {good: {images: good/im, masks: good/ma}, bad: {images: bad/im, "
                 "masks: bad/ma}}\nclasses: [lesion]\n")
    ok = _run_tool(["--definitions", str(y), "--dataset", "tooltest_good", "--no-progress"])
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "1 samples checked, 0 error(s)" in ok.stdout
    bad = _run_tool(["--definitions", str(y), "--dataset", "tooltest_bad", "--no-progress"])
    assert bad.returncode == 1 and "size_mismatch" in bad.stdout and "x.png" in bad.stdout
