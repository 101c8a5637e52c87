from abc import ABCMeta, abstractmethod
from typing import Dict

import torch
import torch.nn as nn

from skinformer.layers import ShapeSpec

__all__ = ["Backbone"]


class Backbone(nn.Module, metaclass=ABCMeta):
    """A network that maps an image batch ``B×3×H×W`` to named feature maps.

    Subclasses set ``_out_features``, ``_out_feature_channels`` and ``_out_feature_strides``
    (e.g. ``res2..res5`` with strides 4..32). A backbone loaded with pretrained weights sets
    ``pretrained_pixel_stats = (mean, std)`` (0-255 units) to the input normalisation those weights
    were trained with; models use it unless ``MODEL.PIXEL_MEAN`` / ``MODEL.PIXEL_STD`` are set.
    """

    pretrained_pixel_stats = None

    @abstractmethod
    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Return ``{name: B×C_name×H/stride×W/stride}`` for every name in ``_out_features``."""

    @property
    def size_divisibility(self) -> int:
        """Inputs are padded to a multiple of this (0 = no constraint)."""
        return 0

    def output_shape(self) -> Dict[str, ShapeSpec]:
        """``{name: ShapeSpec(channels, stride)}`` of every output feature."""
        return {
            name: ShapeSpec(channels=self._out_feature_channels[name], stride=self._out_feature_strides[name])
            for name in self._out_features
        }
