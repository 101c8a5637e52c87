"""Normalisation layers and ``get_norm`` by name."""
import torch
import torch.nn as nn
from torchvision.ops.misc import FrozenBatchNorm2d as _TVFrozenBN

__all__ = ["FrozenBatchNorm2d", "get_norm", "convert_frozen_batchnorm", "LayerNorm2d"]


class FrozenBatchNorm2d(_TVFrozenBN):
    """BatchNorm with fixed statistics and affine parameters (buffers, not parameters)."""


def convert_frozen_batchnorm(module: nn.Module) -> nn.Module:
    """Return ``module`` with every BatchNorm2d replaced by a FrozenBatchNorm2d holding its values."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, FrozenBatchNorm2d):
        frozen = FrozenBatchNorm2d(module.num_features, eps=module.eps)
        if module.affine:
            frozen.weight.data.copy_(module.weight.data)
            frozen.bias.data.copy_(module.bias.data)
        if module.track_running_stats:
            frozen.running_mean.data.copy_(module.running_mean.data)
            frozen.running_var.data.copy_(module.running_var.data)
        return frozen
    for name, child in module.named_children():
        new_child = convert_frozen_batchnorm(child)
        if new_child is not child:
            setattr(module, name, new_child)
    return module


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of ``N×C×H×W`` maps."""

    def __init__(self, num_channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


_NORMS = {
    "BN": nn.BatchNorm2d,
    "SyncBN": nn.SyncBatchNorm,
    "FrozenBN": FrozenBatchNorm2d,
    "GN": lambda c: nn.GroupNorm(32 if c % 32 == 0 else max(1, c // 8), c),
    "LN": LayerNorm2d,
}


def get_norm(norm, out_channels: int):
    """Build a normalisation layer by name ("BN", "SyncBN", "FrozenBN", "GN", "LN", "" = none)."""
    if norm is None or norm == "":
        return None
    if callable(norm):
        return norm(out_channels)
    if norm not in _NORMS:
        raise KeyError(f"Unknown norm '{norm}'; expected one of {sorted(_NORMS)} or ''")
    return _NORMS[norm](out_channels)
