"""Building blocks shared by backbones, pixel decoders and transformer decoders."""
from .conv import Conv2d
from .norm import FrozenBatchNorm2d, LayerNorm2d, convert_frozen_batchnorm, get_norm
from .shape_spec import ShapeSpec
from .mlp import MLP, ffn_relu
from .softplus import binary_cross_entropy_with_logits, softplus
from .linear import (
    CPU_LINEAR_KERNELS, OneDNNLinear, mask_product, onednn_linear, resolve_cpu_linear_kernel, set_cpu_linear_kernel,
)
from .position_encoding import PositionEmbeddingSine, gen_sineembed_for_position
from .weight_init import c2_msra_fill, c2_xavier_fill
from .ms_deform_attn import (
    MSDeformAttn,
    multi_scale_deformable_attn,
    multi_scale_deformable_attn_pytorch,
)
