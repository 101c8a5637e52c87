"""Per-pixel semantic segmentation heads. Importing this package registers them in SEM_SEG_HEAD_REGISTRY."""
from .build import SEM_SEG_HEAD_REGISTRY, build_sem_seg_head
from .deeplab import ASPP, DeepLabV3PlusHead
from .fpn_head import FPNHead
from .segformer_head import SegFormerHead
from .unet import AttentionGate, ConvBlock, UNetHead
