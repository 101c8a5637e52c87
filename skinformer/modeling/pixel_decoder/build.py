from typing import Dict

from skinformer.layers import ShapeSpec
from skinformer.utils.registry import Registry

__all__ = ["PIXEL_DECODER_REGISTRY", "build_pixel_decoder"]

PIXEL_DECODER_REGISTRY = Registry("PIXEL_DECODER")
PIXEL_DECODER_REGISTRY.__doc__ = """
Registry for pixel decoders: modules that turn backbone features into per-pixel mask features
and multi-scale features for a transformer decoder.

Each entry is called as ``obj(cfg, input_shape: Dict[str, ShapeSpec])`` and returns an
``nn.Module`` with ``forward_features(features) -> (mask_features B×C×H/4×W/4,
multi_scale_features: list of B×C×h×w, low resolution first)``.
The name is read from ``cfg.MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME``.
"""


def build_pixel_decoder(cfg, input_shape: Dict[str, ShapeSpec]):
    """The pixel decoder ``MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME`` for backbone features
    ``input_shape``; it must implement ``forward_features``."""
    name = cfg.MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME
    model = PIXEL_DECODER_REGISTRY.get(name, config_key="MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME")(cfg, input_shape)
    if not callable(getattr(model, "forward_features", None)):
        raise ValueError(f"Pixel decoder '{name}' must implement forward_features(features)")
    return model
