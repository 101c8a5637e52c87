import torch
import torch.nn as nn

from .norm import FrozenBatchNorm2d

__all__ = ["Conv2d"]


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` with an optional norm and activation applied after the convolution.

    A :class:`FrozenBatchNorm2d` norm is folded into the convolution (weight scaled per output
    channel, its shift added as the bias): the same function, gradients included, without a pass
    over the output; on CPU that is about a tenth of a ResNet-50 step.
    """

    def __init__(self, *args, norm=None, activation=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.norm = norm
        self.activation = activation

    def _frozen_bn_folded(self):
        """``(weight, bias)`` of conv + frozen BN as one convolution."""
        bn = self.norm
        scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
        bias = bn.bias - bn.running_mean * scale
        if self.bias is not None:
            bias = bias + self.bias * scale
        return self.weight * scale.reshape(-1, 1, 1, 1).to(self.weight.dtype), bias.to(self.weight.dtype)

    def forward(self, x):
        """Convolution, then norm (folded in if frozen BN) and activation: ``B×C_in×H×W -> B×C_out×H'×W'``."""
        if isinstance(self.norm, FrozenBatchNorm2d):
            x = self._conv_forward(x, *self._frozen_bn_folded())
        else:
            x = super().forward(x)
            if self.norm is not None:
                x = self.norm(x)
        if self.activation is not None:
            x = self.activation(x)
        return x
