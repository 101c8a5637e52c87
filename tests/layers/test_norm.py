import subprocess
import sys

import torch
import torch.nn as nn

from skinformer.layers import FrozenBatchNorm2d
from skinformer.layers.norm import convert_frozen_batchnorm


def _trained_bn(c=6):
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(c)
    bn.train()
    for _ in range(3):  # non-trivial running statistics
        bn(torch.randn(4, c, 5, 5) * 3 + 1)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2.0)
        bn.bias.uniform_(-1.0, 1.0)
    return bn.eval()


def test_frozen_bn_equals_batchnorm_in_eval_and_passes_gradients_to_the_input_only():
    bn = _trained_bn()
    frozen = FrozenBatchNorm2d(6)
    frozen.load_state_dict(bn.state_dict())  # num_batches_tracked is dropped, not reported
    x = torch.randn(2, 6, 7, 7, requires_grad=True)
    y = frozen(x)
    torch.testing.assert_close(y, bn(x))
    expected = (x - bn.running_mean[:, None, None]) / torch.sqrt(bn.running_var[:, None, None] + bn.eps)
    torch.testing.assert_close(y, expected * bn.weight[:, None, None] + bn.bias[:, None, None])
    y.sum().backward()
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    torch.testing.assert_close(x.grad, scale[None, :, None, None].expand_as(x))
    assert list(frozen.parameters()) == []
    frozen.train()
    torch.testing.assert_close(frozen(x), y)  # statistics stay frozen in training mode


def test_convert_frozen_batchnorm_keeps_the_values():
    model = nn.Sequential(nn.Conv2d(3, 6, 3), _trained_bn())
    x = torch.randn(1, 3, 9, 9)
    ref = model(x)
    model = convert_frozen_batchnorm(model)
    assert isinstance(model[1], FrozenBatchNorm2d)
    torch.testing.assert_close(model(x), ref)


def test_layers_do_not_import_torchvision():
    code = "import sys, skinformer.layers.norm; print('torchvision' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
