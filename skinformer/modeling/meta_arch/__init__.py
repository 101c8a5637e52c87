"""Meta-architectures. Importing this package registers them in META_ARCH_REGISTRY."""
from .build import META_ARCH_REGISTRY, build_model
from .per_pixel import PerPixelSegmentor
from .mask_former import MaskFormer, SiMaskFormer
