import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from skinformer.layers import Conv2d, FrozenBatchNorm2d


def _frozen_bn(c):
    bn = FrozenBatchNorm2d(c)
    g = torch.Generator().manual_seed(1)
    bn.weight.copy_(torch.rand(c, generator=g) + 0.5)
    bn.bias.copy_(torch.randn(c, generator=g))
    bn.running_mean.copy_(torch.randn(c, generator=g))
    bn.running_var.copy_(torch.rand(c, generator=g) + 0.1)
    return bn


@pytest.mark.parametrize("bias", [False, True])
def test_frozen_bn_folded_into_the_conv_is_the_same_function_and_gradient(bias):
    torch.manual_seed(0)
    conv = Conv2d(4, 6, 3, stride=2, padding=1, bias=bias, norm=_frozen_bn(6), activation=F.relu)
    x = torch.randn(2, 4, 9, 9, requires_grad=True)
    out = conv(x)
    # reference: the convolution, then the frozen BN as a separate op, then the activation
    ref_x = x.detach().clone().requires_grad_(True)
    ref_w = conv.weight.detach().clone().requires_grad_(True)
    ref = F.relu(conv.norm(F.conv2d(ref_x, ref_w, conv.bias, stride=2, padding=1)))
    torch.testing.assert_close(out, ref)
    grad = torch.randn_like(out)
    out.backward(grad)
    ref.backward(grad)
    torch.testing.assert_close(x.grad, ref_x.grad)
    torch.testing.assert_close(conv.weight.grad, ref_w.grad)
    assert conv.norm.weight.grad is None  # frozen: buffers, never trained


def test_trainable_norms_stay_separate_ops():
    torch.manual_seed(0)
    conv = Conv2d(3, 5, 1, bias=False, norm=nn.BatchNorm2d(5)).train()
    x = torch.randn(4, 3, 6, 6)
    conv(x)
    assert conv.norm.num_batches_tracked.item() == 1  # batch statistics were used and updated
