import logging
from typing import List, Tuple

from skinformer.layers import ShapeSpec
from skinformer.utils.registry import Registry

from .backbone import Backbone

__all__ = ["BACKBONE_REGISTRY", "build_backbone", "resolve_pixel_normalization"]

logger = logging.getLogger(__name__)

# torchvision / timm ImageNet statistics in 0-255 units: the normalisation when neither the config
# nor pretrained weights give one.
IMAGENET_PIXEL_MEAN = [123.675, 116.28, 103.53]
IMAGENET_PIXEL_STD = [58.395, 57.12, 57.375]

BACKBONE_REGISTRY = Registry("BACKBONE")
BACKBONE_REGISTRY.__doc__ = """
Registry for backbones (feature extractors).

Each entry is called as ``obj(cfg, input_shape: ShapeSpec)`` and must return a :class:`Backbone`.
The name is read from ``cfg.MODEL.BACKBONE.NAME``.
"""


def build_backbone(cfg, input_shape: ShapeSpec = None) -> Backbone:
    """Build the backbone named by ``cfg.MODEL.BACKBONE.NAME``."""
    if input_shape is None:
        input_shape = ShapeSpec(channels=len(cfg.MODEL.PIXEL_MEAN) or 3)
    backbone = BACKBONE_REGISTRY.get(cfg.MODEL.BACKBONE.NAME, config_key="MODEL.BACKBONE.NAME")(cfg, input_shape)
    assert isinstance(backbone, Backbone), f"{cfg.MODEL.BACKBONE.NAME} did not return a Backbone"
    return backbone


def resolve_pixel_normalization(cfg, backbone: Backbone) -> Tuple[List[float], List[float]]:
    """The input ``(mean, std)`` (0-255 units, one value per channel) a model normalises with.

    ``MODEL.PIXEL_MEAN`` / ``MODEL.PIXEL_STD`` when the config sets them (empty = unset); otherwise
    the statistics the backbone's pretrained weights were trained with; otherwise ImageNet's. A
    config value that differs from the pretrained weights' statistics is kept, with a warning.
    """
    mean, std = list(cfg.MODEL.PIXEL_MEAN), list(cfg.MODEL.PIXEL_STD)
    if bool(mean) != bool(std):
        raise ValueError(f"MODEL.PIXEL_MEAN {mean} and MODEL.PIXEL_STD {std}: set both or neither "
                         f"(empty = the pretrained backbone's normalisation)")
    pretrained = backbone.pretrained_pixel_stats
    if mean:
        if pretrained is not None and any(
            abs(a - b) > 1e-3 for a, b in zip(mean + std, list(pretrained[0]) + list(pretrained[1]))
        ):
            logger.warning(
                f"MODEL.PIXEL_MEAN {mean} / MODEL.PIXEL_STD {std} differ from the normalisation the pretrained "
                f"backbone was trained with (mean {pretrained[0]}, std {pretrained[1]}); keeping the config's "
                f"values. Leave both empty to use the backbone's."
            )
        return mean, std
    if pretrained is not None:
        logger.info(f"Pixel normalisation from the pretrained backbone: mean {pretrained[0]}, std {pretrained[1]}")
        return list(pretrained[0]), list(pretrained[1])
    return list(IMAGENET_PIXEL_MEAN), list(IMAGENET_PIXEL_STD)
