import torch
import torch.nn as nn
import torch.nn.functional as F

from .linear import ONEDNN_1X1_DILATION, is_pointwise_conv, onednn_applies, onednn_takes_1x1
from .norm import FrozenBatchNorm2d

__all__ = ["Conv2d"]


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` with an optional norm and activation applied after the convolution.

    A :class:`FrozenBatchNorm2d` norm is folded into the convolution (weight scaled per output
    channel, its shift added as the bias): the same function, gradients included, without a pass
    over the output; on CPU that is about a tenth of a ResNet-50 step.

    ``cpu_linear_kernel`` (``MODEL.CPU_LINEAR_KERNEL``, set by
    :func:`~skinformer.layers.set_cpu_linear_kernel`): with ``"onednn"`` a 1×1 stride-1 convolution
    on CPU float32 is issued so that oneDNN runs it also single-threaded (see
    :mod:`skinformer.layers.linear`); the result is the same.
    """

    cpu_linear_kernel = "blas"

    def __init__(self, *args, norm=None, activation=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.norm = norm
        self.activation = activation

    def _conv_forward(self, input, weight, bias):
        if (self.cpu_linear_kernel == "onednn" and is_pointwise_conv(self) and onednn_applies(input, weight)
                and onednn_takes_1x1(input, self.groups)):
            return F.conv2d(input, weight, bias, 1, 0, ONEDNN_1X1_DILATION, self.groups)
        return super()._conv_forward(input, weight, bias)

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
