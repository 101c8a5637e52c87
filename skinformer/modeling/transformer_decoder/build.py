from skinformer.utils.registry import Registry

__all__ = ["TRANSFORMER_DECODER_REGISTRY", "build_transformer_decoder"]

TRANSFORMER_DECODER_REGISTRY = Registry("TRANSFORMER_DECODER")
TRANSFORMER_DECODER_REGISTRY.__doc__ = """
Registry for mask-transformer decoders.

Each entry is called as ``obj(cfg, in_channels: int, mask_classification: bool = True)`` and
returns an ``nn.Module`` whose ``forward(multi_scale_features, mask_features, targets=None)``
returns the prediction dict described in :mod:`skinformer.modeling.transformer_decoder`.
The name is read from ``cfg.MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME``.
"""


def build_transformer_decoder(cfg, in_channels: int, mask_classification: bool = True, name: str = None,
                              config_key: str = "MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME"):
    """Build the decoder ``name`` (default ``cfg.MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME``;
    the SiMaskFormer meta-architecture passes ``MODEL.SIMASKFORMER.TRANSFORMER_DECODER_NAME``)."""
    name = name or cfg.MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME
    return TRANSFORMER_DECODER_REGISTRY.get(name, config_key=config_key)(cfg, in_channels, mask_classification)
