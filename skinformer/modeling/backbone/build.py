from skinformer.layers import ShapeSpec
from skinformer.utils.registry import Registry

from .backbone import Backbone

__all__ = ["BACKBONE_REGISTRY", "build_backbone"]

BACKBONE_REGISTRY = Registry("BACKBONE")
BACKBONE_REGISTRY.__doc__ = """
Registry for backbones (feature extractors).

Each entry is called as ``obj(cfg, input_shape: ShapeSpec)`` and must return a :class:`Backbone`.
The name is read from ``cfg.MODEL.BACKBONE.NAME``.
"""


def build_backbone(cfg, input_shape: ShapeSpec = None) -> Backbone:
    """Build the backbone named by ``cfg.MODEL.BACKBONE.NAME``."""
    if input_shape is None:
        input_shape = ShapeSpec(channels=len(cfg.MODEL.PIXEL_MEAN))
    backbone = BACKBONE_REGISTRY.get(cfg.MODEL.BACKBONE.NAME)(cfg, input_shape)
    assert isinstance(backbone, Backbone), f"{cfg.MODEL.BACKBONE.NAME} did not return a Backbone"
    return backbone
