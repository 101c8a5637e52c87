"""Building blocks shared by backbones, pixel decoders and transformer decoders."""
from .conv import Conv2d
from .norm import FrozenBatchNorm2d, LayerNorm2d, convert_frozen_batchnorm, get_norm
from .shape_spec import ShapeSpec
