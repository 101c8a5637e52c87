"""Config keys of the mask-classification family (Mask2Former and SiMaskFormer)."""
from .config import CfgNode as CN

__all__ = ["add_mask_former_config"]


def add_mask_former_config(cfg: CN) -> None:
    """Add ``MODEL.MASK_FORMER``, ``MODEL.SIMASKFORMER`` and pixel-decoder keys to ``cfg``."""
    cfg.MODEL.MASK_FORMER = CN()
    cfg.MODEL.SIMASKFORMER = CN()
