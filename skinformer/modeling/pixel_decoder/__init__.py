"""Pixel decoders (registered in ``PIXEL_DECODER_REGISTRY``): backbone features ->
(``mask_features`` at stride 4, ``multi_scale_features`` low resolution first)."""
from .build import PIXEL_DECODER_REGISTRY, build_pixel_decoder
from .fpn import FPN_FUSIONS, BasePixelDecoder, FPNFusion
from .msdeformattn import MSDeformAttnPixelDecoder, MSDeformAttnTransformerEncoder

__all__ = [
    "PIXEL_DECODER_REGISTRY", "build_pixel_decoder", "FPN_FUSIONS", "FPNFusion", "BasePixelDecoder",
    "MSDeformAttnPixelDecoder", "MSDeformAttnTransformerEncoder",
]
