"""Weight initialisers (Caffe2 / detectron2 conventions).

Re-implemented instead of importing ``fvcore.nn.weight_init`` because importing ``fvcore.nn``
jit-scripts its focal losses, which recent PyTorch reports with a FutureWarning on every run.
"""
import torch.nn as nn

__all__ = ["c2_xavier_fill", "c2_msra_fill"]


def c2_xavier_fill(module: nn.Module) -> None:
    """Caffe2 "XavierFill" (= kaiming uniform with a = 1) of ``module.weight``; bias 0."""
    nn.init.kaiming_uniform_(module.weight, a=1)
    if getattr(module, "bias", None) is not None:
        nn.init.constant_(module.bias, 0)


def c2_msra_fill(module: nn.Module) -> None:
    """Caffe2 "MSRAFill" (kaiming normal, fan_out, relu) of ``module.weight``; bias 0."""
    nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    if getattr(module, "bias", None) is not None:
        nn.init.constant_(module.bias, 0)
