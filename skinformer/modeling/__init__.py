"""Models. Importing this package registers every built-in backbone, head, pixel decoder,
transformer decoder and meta-architecture in its registry."""
from . import backbone, sem_seg_heads, pixel_decoder, transformer_decoder, meta_arch  # noqa: F401  (registration)
from .backbone import BACKBONE_REGISTRY, Backbone, build_backbone
from .meta_arch import META_ARCH_REGISTRY, build_model
from .postprocessing import sem_seg_postprocess
from .sem_seg_heads import SEM_SEG_HEAD_REGISTRY, build_sem_seg_head
from .pixel_decoder import PIXEL_DECODER_REGISTRY, build_pixel_decoder
from .transformer_decoder import TRANSFORMER_DECODER_REGISTRY, build_transformer_decoder
from .losses import LOSS_REGISTRY, build_loss
from .matcher import HungarianMatcher
from .criterion import SetCriterion, build_weight_dict
from .meta_arch import MaskFormer, SiMaskFormer
