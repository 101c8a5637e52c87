"""LabelSpace: metadata defaults in one place, the decision rule, decoding and submission masks."""
import numpy as np
import pytest
import torch
from PIL import Image

from skinformer.config import get_cfg
from skinformer.data.catalog import Metadata, MetadataCatalog
from skinformer.structures import LabelSpace


def test_from_metadata_applies_defaults_once():
    space = LabelSpace.from_metadata(Metadata(name="ls_min", classes=["lesion"]))
    assert (space.ignore_label, space.background_is_class, space.mask_encoding, space.mat_key, space.threshold) == \
        (255, False, "binary", "smgt", 0.5)
    assert space.num_classes == 1 and space.background_label == 1 and space.num_labels == 2
    assert space.decision == "threshold"
    vofo = LabelSpace.from_metadata({"classes": ["bg", "a", "b"], "has_background_class": True, "ignore_label": 0})
    assert vofo.decision == "argmax" and vofo.background_label == 0 and vofo.num_labels == 3
    multi = LabelSpace.from_metadata({"classes": ["a", "b"], "mapper": "MultiLabelMapper"}, threshold=0.3)
    assert multi.decision == "multi_label" and multi.threshold == 0.3
    assert LabelSpace.from_metadata(multi) is multi
    with pytest.raises(KeyError, match="classes"):
        LabelSpace.from_metadata({"name": "x"})


def test_from_metadata_reads_any_get_object_and_names_classes():
    class Fields:  # not a Mapping, no as_dict: only get(key, default)
        def get(self, key, default=None):
            return {"has_background_class": True, "ignore_label": 7}.get(key, default)

    space = LabelSpace.from_metadata(Fields(), classes=["bg", "a"])
    assert space.classes == ("bg", "a") and space.background_is_class and space.ignore_label == 7
    renamed = LabelSpace.from_metadata(space, classes=["x", "y"])
    assert renamed.classes == ("x", "y") and renamed.background_is_class
    with pytest.raises(TypeError, match="expected dataset metadata"):
        LabelSpace.from_metadata(42)


def test_decision_rule_each_background_rule():
    s = torch.tensor([[[0.2, 0.7, 0.6]], [[0.1, 0.2, 0.9]]])  # K=2, H=1, W=3
    no_bg = LabelSpace(classes=("a", "b"))
    assert no_bg.labels_from_scores(s).tolist() == [[2, 0, 1]]
    assert no_bg.foreground(s).tolist() == [[False, True, True]]
    assert no_bg.masks_from_scores(s).tolist() == [[[False, True, False]], [[False, False, True]]]
    bg = LabelSpace(classes=("bg", "a"), background_is_class=True)
    assert bg.labels_from_scores(s).tolist() == [[0, 0, 1]] and bg.foreground(s).tolist() == [[False, False, True]]
    multi = LabelSpace(classes=("a", "b"), multi_label=True)
    assert multi.masks_from_scores(s).tolist() == [[[False, True, True]], [[False, False, True]]]
    # numpy in, same answer; the threshold moves the cut
    assert LabelSpace(classes=("a", "b"), threshold=0.65).labels_from_scores(s.numpy()).tolist() == [[2, 0, 1]]
    assert LabelSpace(classes=("a", "b"), threshold=0.8).labels_from_scores(s).tolist() == [[2, 2, 1]]


def test_to_submission_png():
    s = torch.tensor([[[0.2, 0.7]]])
    assert LabelSpace(classes=("lesion",)).to_submission_png(s)[""].tolist() == [[0, 255]]
    multi = LabelSpace(classes=("globules", "streaks"), multi_label=True).to_submission_png(
        torch.tensor([[[0.9, 0.1]], [[0.6, 0.7]]]))
    assert sorted(multi) == ["_globules", "_streaks"] and multi["_streaks"].tolist() == [[255, 255]]
    labels = LabelSpace(classes=("bg", "a", "b"), background_is_class=True).to_submission_png(
        torch.tensor([[[0.9, 0.1]], [[0.05, 0.2]], [[0.05, 0.7]]]))
    assert labels[""].dtype == np.uint8 and labels[""].tolist() == [[0, 2]]


def test_decode_uses_the_encoding(tmp_path):
    p = str(tmp_path / "m.png")
    Image.fromarray(np.array([[0, 255]], np.uint8)).save(p)
    assert LabelSpace(classes=("lesion",)).decode(p).tolist() == [[1, 0]]
    idx = LabelSpace(classes=("bg", "a"), background_is_class=True, mask_encoding="index")
    q = str(tmp_path / "i.png")
    Image.fromarray(np.array([[0, 1]], np.uint8)).save(q)
    assert idx.decode(q).tolist() == [[0, 1]]


def test_from_config_carries_test_threshold():
    MetadataCatalog.get("ls_cfg_ds").set(classes=["lesion"])
    cfg = get_cfg()
    cfg.DATASETS.TEST = ("ls_cfg_ds",)
    cfg.TEST.THRESHOLD = 0.3
    space = LabelSpace.from_config(cfg)
    assert space.threshold == 0.3 and space.classes == ("lesion",)
