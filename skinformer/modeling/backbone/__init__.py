"""Backbones. Importing this package registers every built-in backbone in BACKBONE_REGISTRY."""
from .backbone import Backbone
from .build import BACKBONE_REGISTRY, build_backbone, resolve_pixel_normalization
from .resnet import BasicBlock, BasicStem, BottleneckBlock, ResNet, build_resnet_backbone, convert_torchvision_resnet
from .timm_backbone import TimmBackbone, freeze_batchnorm, load_timm_state_dict
from .unet_encoder import UNetEncoder
from .mit import MiTBackbone, load_hf_mit_state_dict
