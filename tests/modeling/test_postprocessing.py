"""MODEL.POSTPROCESS (MaskPostProcessor): known-answer morphology / holes / components, the
scores rewritten so every decision rule reproduces the cleaned masks, and the model applies it."""
import numpy as np
import pytest
import torch

from skinformer.config import get_cfg
from skinformer.modeling import build_model
from skinformer.modeling.postprocessing import MaskPostProcessor


def _pp(**kw):
    kw.setdefault("decision", "threshold")
    kw.setdefault("num_classes", 1)
    return MaskPostProcessor(**kw)


def _scores(mask):
    return torch.from_numpy(np.where(mask, 0.8, 0.2).astype(np.float32))[None]


def test_opening_removes_specks_keeps_blob():
    m = np.zeros((30, 30), bool)
    m[5:20, 5:20] = True
    m[25, 25] = True  # a 1-pixel speck
    out = _pp(opening_kernels=[3])(_scores(m))[0] > 0.5
    assert out[5:20, 5:20].all() and not out[25, 25] and out.sum() == 15 * 15


def test_closing_and_hole_filling():
    m = np.zeros((30, 30), bool)
    m[5:20, 5:20] = True
    m[10:13, 10:13] = False  # 3x3 hole
    filled = _pp(fill_holes=True)(_scores(m))[0] > 0.5
    assert filled[5:20, 5:20].all() and filled.sum() == 225
    m2 = np.zeros((30, 30), bool)
    m2[5:20, 5:12] = True
    m2[5:20, 13:20] = True  # a one-pixel gap
    closed = _pp(closing_kernels=[3])(_scores(m2))[0] > 0.5
    assert closed[5:20, 12].sum() >= 13


def test_min_area_and_keep_largest():
    m = np.zeros((40, 40), bool)
    m[0:10, 0:10] = True  # 100 px
    m[20:25, 20:25] = True  # 25 px
    m[35:37, 35:37] = True  # 4 px
    s = _scores(m)
    assert int((_pp(min_area=10)(s)[0] > 0.5).sum()) == 125
    assert int((_pp(keep_largest=True)(s)[0] > 0.5).sum()) == 100
    unchanged = _pp()(s)
    assert unchanged is s  # nothing configured: no-op


def test_per_class_kernels_multi_label_and_exclusive_rules():
    # two overlapping attributes, class 1 gets a big opening that erases its small square
    a = np.zeros((2, 30, 30), bool)
    a[0, 2:20, 2:20] = True
    a[1, 10:14, 10:14] = True
    s = torch.from_numpy(np.where(a, 0.9, 0.1).astype(np.float32))
    out = MaskPostProcessor(decision="multi_label", num_classes=2, opening_kernels=[1, 7])(s) > 0.5
    assert (out[0].numpy() == a[0]).all() and not out[1].any()
    # exclusive with a background class: removed pixels become background (index 0)
    lab = np.zeros((30, 30), np.int64)
    lab[5:25, 5:25] = 1
    lab[0, 0] = 2  # speck of class 2
    sc = torch.nn.functional.one_hot(torch.from_numpy(lab), 3).permute(2, 0, 1).float() * 0.6 + 0.1
    out = MaskPostProcessor(decision="argmax", num_classes=3, opening_kernels=[1, 1, 3])(sc).argmax(0)
    assert out[0, 0] == 0 and (out[5:25, 5:25] == 1).all()
    with pytest.raises(ValueError, match="OPENING_KERNELS"):
        MaskPostProcessor(decision="argmax", num_classes=3, opening_kernels=[1, 3])


def test_model_applies_postprocess_from_config():
    cfg = get_cfg()
    cfg.MODEL.TIMM.NAME = "resnet10t"
    cfg.MODEL.POSTPROCESS.ENABLED = True
    cfg.MODEL.POSTPROCESS.MIN_AREA = 10 ** 6
    cfg.MODEL.POSTPROCESS.THRESHOLD = 0.0  # every pixel foreground: one component, smaller than MIN_AREA
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    assert model.postprocessor.decision == "threshold"
    x = [{"image": torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8), "height": 40, "width": 50}]
    with torch.no_grad():
        out = model(x)[0]["sem_seg"]
    assert out.shape == (1, 40, 50) and float(out.max()) == 0.0  # the component was removed
    cfg.MODEL.POSTPROCESS.ENABLED = False
    torch.manual_seed(0)
    plain = build_model(cfg).eval()
    assert plain.postprocessor is None
    with torch.no_grad():
        assert float(plain(x)[0]["sem_seg"].min()) > 0.0
