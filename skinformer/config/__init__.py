from .config import CfgNode, ConfigError, configurable, get_cfg
from .mask_former import add_mask_former_config

__all__ = ["CfgNode", "ConfigError", "configurable", "get_cfg", "add_mask_former_config"]
