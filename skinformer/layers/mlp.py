"""A plain multi-layer perceptron (DETR's box / mask-embedding heads)."""
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["MLP", "ffn_relu"]


def ffn_relu(x: torch.Tensor) -> torch.Tensor:
    """ReLU of a transformer FFN's hidden activations (shape kept).

    Out of place while autograd records: the first linear's output is a view (of its 2-D product
    for a 3-D input, of the convolution output with ``MODEL.CPU_LINEAR_KERNEL onednn``), and an
    in-place op on a view makes autograd rebuild the whole base in backward (a zero fill and two
    copies of the ``N×d_ffn`` activations per layer). In place without autograd (inference),
    where it spares allocating and writing a second ``N×d_ffn`` buffer.
    """
    return F.relu(x, inplace=not torch.is_grad_enabled())


class MLP(nn.Module):
    """``num_layers`` Linear layers with ``activation`` between them (none after the last).

    ``...×input_dim`` -> ``...×output_dim``; hidden layers have ``hidden_dim`` features.
    """

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int,
                 activation: Callable[[torch.Tensor], torch.Tensor] = F.relu):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"MLP: num_layers must be >= 1, got {num_layers}")
        self.num_layers = num_layers
        self.activation = activation
        dims_in = [input_dim] + [hidden_dim] * (num_layers - 1)
        dims_out = [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(dims_in, dims_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Linear layers with the activation between them (not after the last): ``...×D_in -> ...×D_out``."""
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < self.num_layers - 1:
                x = self.activation(x)
        return x
