import numpy as np
import pytest
import torch
import torch.nn as nn

from skinformer.config import get_cfg
from skinformer.data.transforms import build_augmentation
from skinformer.modeling.test_time_augmentation import SegmentorWithTTA, build_inference_model


class _AsymmetricModel(nn.Module):
    """Scores = (column index < width / 3) at the input resolution, upsampled to height×width:
    not flip-invariant, so an un-flipped average differs from the plain prediction."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, batched_inputs):
        outs = []
        for x in batched_inputs:
            img = x["image"]
            self.seen.append((tuple(img.shape[-2:]), img.dtype))
            h, w = img.shape[-2:]
            s = (img[:1].float() > 127).float()  # the white left part of the test image
            s = torch.nn.functional.interpolate(s[None], size=(x["height"], x["width"]), mode="nearest")[0]
            outs.append({"sem_seg": s})
        return outs


def _image():
    img = torch.zeros(3, 40, 60, dtype=torch.uint8)
    img[:, :, :20] = 255
    return img


def test_tta_scales_flips_and_averages_back_in_the_original_frame():
    model = _AsymmetricModel().eval()
    tta = SegmentorWithTTA(model, min_sizes=(20, 40), max_size=1000, hflip=True, vflip=True)
    out = tta([{"image": _image(), "height": 40, "width": 60}])[0]["sem_seg"]
    assert tta.num_augmentations == 2 * 4
    # every copy, once un-flipped, predicts the left third: the average equals it
    expected = torch.zeros(1, 40, 60)
    expected[:, :, :20] = 1
    assert out.shape == (1, 40, 60)
    assert (out - expected).abs().mean() < 0.02
    sizes = sorted({s for s, _ in model.seen})
    assert sizes == [(20, 30), (40, 60)] and all(d == torch.uint8 for _, d in model.seen)


def test_tta_without_unflipping_would_be_wrong():
    # guards the test above: a flipped copy's raw output is the mirror image
    model = _AsymmetricModel().eval()
    flipped = model([{"image": _image().flip(-1), "height": 40, "width": 60}])[0]["sem_seg"]
    assert flipped[0, :, -1].mean() == 1 and flipped[0, :, 0].mean() == 0


def test_build_inference_model_reads_test_aug_and_test_mapper_keeps_original_pixels():
    cfg = get_cfg()
    model = _AsymmetricModel().eval()
    assert build_inference_model(cfg, model) is model
    assert build_augmentation(cfg, is_train=False)  # the usual resize
    cfg.TEST.AUG.ENABLED = True
    cfg.TEST.AUG.MIN_SIZES = (16, 32, 48)
    cfg.TEST.AUG.FLIP = False
    cfg.TEST.AUG.VFLIP = True
    tta = build_inference_model(cfg, model)
    assert isinstance(tta, SegmentorWithTTA) and tta.flips == [(False, False), (False, True)]
    assert tta.num_augmentations == 6 and not tta.training
    # the wrapped model must see the original image: the test mapper / predictor do not resize
    assert build_augmentation(cfg, is_train=False) == []
    cfg.TEST.AUG.ENABLED = False
    cfg.TEST.SLIDING_WINDOW.ENABLED = True
    cfg.TEST.SLIDING_WINDOW.ORIGINAL_RESOLUTION = True
    assert build_augmentation(cfg, is_train=False) == []


def test_real_per_pixel_model_with_sliding_window_and_tta():
    from skinformer.modeling import build_model

    cfg = get_cfg()
    cfg.MODEL.META_ARCHITECTURE = "PerPixelSegmentor"
    cfg.MODEL.BACKBONE.NAME = "TimmBackbone"
    cfg.MODEL.TIMM.NAME = "resnet18"
    cfg.MODEL.TIMM.PRETRAINED = False
    cfg.MODEL.SEM_SEG_HEAD.NAME = "FPNHead"
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = 1
    cfg.TEST.SLIDING_WINDOW.ENABLED = True
    cfg.TEST.SLIDING_WINDOW.SIZE = 64
    cfg.TEST.SLIDING_WINDOW.STRIDE = 48
    cfg.TEST.AUG.ENABLED = True
    cfg.TEST.AUG.MIN_SIZES = (64, 96)
    cfg.TEST.AUG.VFLIP = True
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    calls = []
    score = model._window_scores
    model._window_scores = lambda crops: calls.append(len(crops)) or score(crops)
    tta = build_inference_model(cfg, model)
    image = torch.from_numpy(np.random.default_rng(0).integers(0, 255, (3, 80, 120), dtype=np.uint8))
    out = tta([{"image": image, "height": 80, "width": 120}])[0]["sem_seg"]
    assert out.shape == (1, 80, 120) and torch.isfinite(out).all()
    assert out.min() >= 0 and out.max() <= 1
    # scale 64 -> 64x96 (windowed: 2 windows), scale 96 -> 96x144 (2x3 windows); 4 flips each
    assert sum(calls) == 4 * (2 + 6)


def test_tta_squashes_to_the_fixed_size_of_a_squash_trained_model():
    # a model trained on images squashed to INPUT.FIXED_SIZE must see every copy squashed the same
    # way (not the image's aspect ratio), and its average comes back at the original size
    model = _AsymmetricModel().eval()
    cfg = get_cfg()
    cfg.INPUT.FIXED_SIZE = (32, 32)
    cfg.TEST.AUG.ENABLED = True
    cfg.TEST.AUG.MIN_SIZES = (32, 64)
    cfg.TEST.AUG.VFLIP = True
    tta = build_inference_model(cfg, model)
    assert tta.fixed_size == (32, 32)
    out = tta([{"image": _image(), "height": 40, "width": 60}])[0]["sem_seg"]
    assert sorted({s for s, _ in model.seen}) == [(32, 32), (64, 64)]
    expected = torch.zeros(1, 40, 60)
    expected[:, :, :20] = 1
    assert out.shape == (1, 40, 60) and (out - expected).abs().mean() < 0.03
    # a non-square fixed size keeps its own aspect ratio at every scale
    tta = SegmentorWithTTA(model, min_sizes=(16,), max_size=1000, fixed_size=(32, 64))
    assert tta.output_shape(40, 60, 16) == (16, 32) and tta.output_shape(900, 100, 16) == (16, 32)


def test_the_wrapped_models_mode_decides_whether_tta_runs():
    model = _AsymmetricModel()  # training mode, as a trainer holds it
    tta = SegmentorWithTTA(model, min_sizes=(20,), max_size=1000, hflip=False)
    with pytest.raises(RuntimeError, match="is for inference"):
        tta([{"image": _image(), "height": 40, "width": 60}])
    model.eval()  # what inference_context(model) does; the wrapper's own flag is not consulted
    assert tta([{"image": _image(), "height": 40, "width": 60}])[0]["sem_seg"].shape == (1, 40, 60)


def test_default_scale_is_the_models_own_test_scale():
    cfg = get_cfg()
    cfg.TEST.AUG.ENABLED = True
    cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST = 160, 384
    tta = build_inference_model(cfg, _AsymmetricModel().eval())
    assert tta.min_sizes == (160,) and tta.max_size == 384 and tta.num_augmentations == 2  # flips only
    cfg.INPUT.FIXED_SIZE = (256, 320)
    assert build_inference_model(cfg, _AsymmetricModel().eval()).min_sizes == (256,)
    cfg.TEST.AUG.MIN_SIZES, cfg.TEST.AUG.MAX_SIZE = (128, 192), 999
    tta = build_inference_model(cfg, _AsymmetricModel().eval())
    assert tta.min_sizes == (128, 192) and tta.max_size == 999
