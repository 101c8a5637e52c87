"""Sliding-window inference shared by every dense meta-architecture.

An image larger than the window is cut into ``size×size`` windows every ``stride`` pixels (the
last window of a row / column is moved back so it ends at the border), the model scores batches
of windows, and the window score maps are blended where they overlap:

* ``"gaussian"``: each window weighted by a Gaussian centred on it (σ = size / 8, as nnU-Net), so
  the centre of a window, where the model sees the most context, dominates;
* ``"linear"``: a tent that falls linearly from the centre to a small value at the border;
* ``"mean"``: a plain average.

Memory: only ``batch_size`` windows are on the model's device at a time; the blended scores
``K×H×W`` and the weight sum ``H×W`` are accumulated in float32 on the device of the input image
(usually the CPU for a loader's uint8 image), so a 6,000 × 4,000 image with one class needs
≈ 2 × 96 MB of host memory and one window batch of device memory.
"""
from typing import Callable, Dict, List, Tuple

import torch

__all__ = ["SlidingWindow", "window_starts", "blend_weights", "BLEND_WEIGHTS"]


def window_starts(n: int, size: int, stride: int) -> List[int]:
    """Start offsets of windows of ``size`` every ``stride`` along a side of ``n`` pixels; the
    last window ends at ``n`` (one window at 0 when ``n <= size``)."""
    if n <= size:
        return [0]
    starts = list(range(0, n - size + 1, stride))
    return starts if starts[-1] == n - size else starts + [n - size]


def _gaussian_1d(n: int) -> torch.Tensor:
    sigma = n / 8.0
    x = torch.arange(n, dtype=torch.float32) - (n - 1) / 2.0
    return torch.exp(-0.5 * (x / sigma) ** 2)


def _linear_1d(n: int) -> torch.Tensor:
    x = torch.arange(n, dtype=torch.float32) - (n - 1) / 2.0
    return 1.0 - x.abs() / (n / 2.0 + 1.0)


def _mean_1d(n: int) -> torch.Tensor:
    return torch.ones(n, dtype=torch.float32)


#: 1-D profile of each blending mode; the 2-D weight is the outer product.
BLEND_WEIGHTS: Dict[str, Callable[[int], torch.Tensor]] = {
    "gaussian": _gaussian_1d,
    "linear": _linear_1d,
    "mean": _mean_1d,
}


def blend_weights(height: int, width: int, mode: str) -> torch.Tensor:
    """``height×width`` float32 weights of one window, > 0 everywhere (so every pixel of the
    image gets a defined average), maximal at the centre."""
    if mode not in BLEND_WEIGHTS:
        raise ValueError(f"TEST.SLIDING_WINDOW.BLEND = {mode!r} is unknown; expected one of {sorted(BLEND_WEIGHTS)}")
    profile = BLEND_WEIGHTS[mode]
    w = profile(height)[:, None] * profile(width)[None, :]
    # the Gaussian underflows far from the centre; keep a floor so border pixels are defined
    return w.clamp_min(1e-3 * float(w.max()))


class SlidingWindow:
    """Window geometry and blending; ``window(image, score_fn)`` runs it.

    Args:
        size: window side in pixels (of the model's input).
        stride: step between windows, ``0 < stride <= size``.
        blend: a key of :data:`BLEND_WEIGHTS`.
        batch_size: windows scored per call of ``score_fn`` (bounds the device memory).
    """

    def __init__(self, size: int, stride: int, blend: str = "gaussian", batch_size: int = 4):
        size, stride, batch_size = int(size), int(stride), int(batch_size)
        if not (0 < stride <= size):
            raise ValueError(f"TEST.SLIDING_WINDOW: need 0 < STRIDE <= SIZE, got SIZE, STRIDE = {(size, stride)}")
        if batch_size < 1:
            raise ValueError(f"TEST.SLIDING_WINDOW.BATCH_SIZE must be >= 1, got {batch_size}")
        blend_weights(2, 2, blend)  # validates the mode now rather than at the first big image
        self.size, self.stride, self.blend, self.batch_size = size, stride, blend, batch_size

    @classmethod
    def from_config(cls, cfg):
        """The window of ``cfg.TEST.SLIDING_WINDOW``, or None when it is disabled."""
        sw = cfg.TEST.SLIDING_WINDOW
        if not sw.ENABLED:
            return None
        return cls(sw.SIZE, sw.STRIDE, sw.BLEND, sw.BATCH_SIZE)

    def __repr__(self) -> str:
        return (f"SlidingWindow(size={self.size}, stride={self.stride}, blend={self.blend!r}, "
                f"batch_size={self.batch_size})")

    def applies_to(self, image_size: Tuple[int, int]) -> bool:
        """Whether an image of ``(h, w)`` is larger than one window."""
        return max(image_size) > self.size

    def windows(self, height: int, width: int) -> List[Tuple[int, int, int, int]]:
        """``(y0, x0, y1, x1)`` of every window over a ``height×width`` image."""
        return [(y, x, min(y + self.size, height), min(x + self.size, width))
                for y in window_starts(height, self.size, self.stride)
                for x in window_starts(width, self.size, self.stride)]

    def __call__(self, image: torch.Tensor,
                 score_fn: Callable[[List[torch.Tensor]], List[torch.Tensor]]) -> torch.Tensor:
        """Blend the window scores of one image.

        Args:
            image: ``C×H×W`` (any dtype, any device; crops are handed to ``score_fn`` as they are).
            score_fn: list of ``C×h×w`` crops -> list of ``K×h×w`` float score maps, one per crop.
        Returns:
            float32 ``K×H×W`` on ``image.device``.
        """
        height, width = image.shape[-2:]
        boxes = self.windows(height, width)
        total = weight_sum = None
        for start in range(0, len(boxes), self.batch_size):
            chunk = boxes[start: start + self.batch_size]
            scores = score_fn([image[:, y0:y1, x0:x1] for y0, x0, y1, x1 in chunk])
            for (y0, x0, y1, x1), s in zip(chunk, scores):
                s = s.detach().to(image.device, torch.float32)
                if total is None:
                    total = image.new_zeros((s.shape[0], height, width), dtype=torch.float32)
                    weight_sum = image.new_zeros((height, width), dtype=torch.float32)
                w = blend_weights(y1 - y0, x1 - x0, self.blend).to(image.device)
                total[:, y0:y1, x0:x1].add_(s * w)
                weight_sum[y0:y1, x0:x1].add_(w)
        return total.div_(weight_sum)
