import pytest
import torch

from skinformer.config import get_cfg
from skinformer.modeling.sliding_window import SlidingWindow, blend_weights, window_starts


def test_window_starts_cover_the_side_and_end_at_the_border():
    assert window_starts(50, 64, 32) == [0]
    assert window_starts(128, 64, 32) == [0, 32, 64]
    assert window_starts(100, 64, 48) == [0, 36]


@pytest.mark.parametrize("mode", ["gaussian", "linear", "mean"])
def test_blend_weights_positive_and_centre_weighted(mode):
    w = blend_weights(33, 17, mode)
    assert w.shape == (33, 17) and (w > 0).all()
    assert w[16, 8] == w.max()
    if mode != "mean":
        assert w[0, 0] < w[16, 8]


def test_unknown_blend_names_the_key():
    with pytest.raises(ValueError, match="TEST.SLIDING_WINDOW.BLEND"):
        SlidingWindow(64, 32, blend="cubic")
    with pytest.raises(ValueError, match="STRIDE"):
        SlidingWindow(64, 80)


@pytest.mark.parametrize("mode", ["gaussian", "linear", "mean"])
def test_blending_reproduces_a_position_consistent_score_map(mode):
    # a "model" whose score is a function of the absolute pixel position: any blend of the
    # windows must give back exactly that map
    image = torch.arange(3 * 150 * 230, dtype=torch.float32).view(3, 150, 230)
    truth = image[:1] / image.max()
    calls = []

    def score_fn(crops):
        calls.append(len(crops))
        return [c[:1] / image.max() for c in crops]

    out = SlidingWindow(64, 40, blend=mode, batch_size=3)(image, score_fn)
    torch.testing.assert_close(out, truth)
    assert max(calls) <= 3  # never more than batch_size windows at once
    assert sum(calls) == len(window_starts(150, 64, 40)) * len(window_starts(230, 64, 40))


def test_gaussian_blend_prefers_window_centres():
    # windows disagree (each returns its own index); at a window centre its own score dominates
    image = torch.zeros(1, 64, 160)
    counter = iter(range(100))

    def score_fn(crops):
        return [torch.full((1,) + tuple(c.shape[-2:]), float(next(counter))) for c in crops]

    win = SlidingWindow(64, 48, blend="gaussian", batch_size=1)
    out = win(image, score_fn)
    starts = window_starts(160, 64, 48)  # [0, 48, 96]
    for k, x in enumerate(starts):
        assert abs(out[0, 32, x + 32].item() - k) < 0.05
    # x = 60 lies in windows 0 (centre 32) and 1 (centre 80): the Gaussian favours window 1
    assert out[0, 32, 60].item() > 0.8
    counter = iter(range(100))
    mean = SlidingWindow(64, 48, blend="mean", batch_size=1)(image, score_fn)
    assert mean[0, 32, 60].item() == 0.5  # a plain average mixes both windows equally


def test_from_config():
    cfg = get_cfg()
    assert SlidingWindow.from_config(cfg) is None
    cfg.TEST.SLIDING_WINDOW.ENABLED = True
    cfg.TEST.SLIDING_WINDOW.BLEND = "linear"
    win = SlidingWindow.from_config(cfg)
    assert (win.size, win.stride, win.blend, win.batch_size) == (512, 384, "linear", 4)
