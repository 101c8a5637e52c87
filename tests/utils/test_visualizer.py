"""Overlay rules: decision rule per metadata, fill colours, ground-truth contours."""
import types

import numpy as np
import pytest
import torch

from skinformer.structures import Instances
from skinformer.utils.visualizer import Visualizer, save_image


def _meta(**kw):
    d = {"classes": ["lesion"], "palette": [[255, 0, 0]], "has_background_class": False, "ignore_label": 255}
    d.update(kw)
    return types.SimpleNamespace(get=lambda k, default=None: d.get(k, default))


def test_masks_follow_the_label_space_decision_rule():
    s = torch.tensor([[[0.9, 0.4]], [[0.05, 0.45]]])  # K=2, H=1, W=2
    no_bg = Visualizer(_meta(classes=["a", "b"]))
    assert no_bg.prediction_masks({"sem_seg": s}, (1, 2))[0].tolist() == [[[True, False]], [[False, False]]]
    with_bg = Visualizer(_meta(classes=["bg", "b"], has_background_class=True))
    # background is a class: plain argmax, no threshold
    assert with_bg.prediction_masks({"sem_seg": s}, (1, 2))[0][1].tolist() == [[False, True]]


def test_binary_overlay_fill_and_gt_contour(tmp_path):
    img = np.full((20, 20, 3), 100, np.uint8)
    scores = torch.zeros(1, 20, 20)
    scores[0, :10] = 0.9  # top half predicted
    gt = np.full((20, 20), 1, np.int64)  # 1 = background-not-a-class
    gt[5:15, 5:15] = 0
    out = Visualizer(_meta(), alpha=0.5).draw(img, {"sem_seg": scores}, gt)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert tuple(out[2, 2]) == (178, 50, 50)  # blended with red
    assert tuple(out[18, 2]) == (100, 100, 100)  # untouched background
    assert tuple(out[5, 10]) == (0, 255, 255)  # GT contour in the complementary colour
    save_image(str(tmp_path / "o.png"), out)
    assert (tmp_path / "o.png").stat().st_size > 0


def test_multilabel_and_instances():
    img = np.zeros((8, 8, 3), np.uint8)
    meta = _meta(classes=["a", "b"], palette=[[255, 0, 0], [0, 0, 255]])
    scores = torch.full((2, 8, 8), 0.9)  # both classes everywhere: overlapping fills
    out = Visualizer(meta, multi_label=True, alpha=0.5).draw(img, {"sem_seg": scores})
    assert out[0, 0, 0] > 0 and out[0, 0, 2] > 0
    inst = Instances((8, 8))
    inst.pred_masks = torch.zeros(2, 8, 8, dtype=torch.bool)
    inst.pred_masks[0, :4] = True
    inst.pred_masks[1, 4:] = True
    inst.scores = torch.tensor([0.9, 0.2])  # second below threshold: not drawn
    inst.pred_classes = torch.tensor([1, 0])
    out = Visualizer(meta, alpha=1.0).draw(img, {"instances": inst})
    assert tuple(out[0, 0]) == (0, 0, 255) and tuple(out[7, 7]) == (0, 0, 0)


def test_gt_as_raw_0_255_mask_or_file_outlines_the_lesion_not_the_border(tmp_path):
    import cv2

    from skinformer.data.catalog import Metadata

    meta = Metadata(name="_vis_binary", classes=["lesion"], palette=[[255, 0, 0]], has_background_class=False,
                    ignore_label=255, mask_encoding="binary")
    vis = Visualizer(meta)
    raw = np.zeros((30, 30), np.uint8)
    raw[10:20, 10:20] = 255  # the mask file format: 255 = lesion
    for gt in (raw, str(tmp_path / "m.png")):
        cv2.imwrite(str(tmp_path / "m.png"), raw)
        g = vis.gt_masks(gt)
        assert g.shape == (1, 30, 30) and g[0].sum() == 100 and g[0, 15, 15] and not g[0, 0, 0]
        out = vis.draw(np.zeros((30, 30, 3), np.uint8), {"sem_seg": torch.zeros(1, 30, 30)}, gt)
        assert (out[0, :] == 0).all()  # no contour drawn along the image border
    with pytest.raises(ValueError, match="Ground-truth mask values"):
        vis.gt_masks(np.full((4, 4), 7, np.uint8))
