"""Point sampling of mask logits (PointRend), used by the matcher and the mask losses.

Mask losses and matching costs are computed on a fixed number of points per mask instead of
every pixel: memory stays independent of the image size, and predictions (stride 4) and ground
truth (input resolution) are compared at the same continuous locations. For small inputs, where
the points would outnumber the cells of the predicted mask, :func:`resize_target_masks` brings the
ground truth to the prediction grid instead (``MASK_LOSS_SAMPLING "grid"``).
"""
from typing import Callable, Tuple

import torch
import torch.nn.functional as F

__all__ = ["point_sample", "calculate_uncertainty", "get_uncertain_point_coords_with_randomness",
           "resize_target_masks"]


def point_sample(input: torch.Tensor, point_coords: torch.Tensor, **kwargs) -> torch.Tensor:
    """Bilinearly sample ``input`` at normalised points (``F.grid_sample`` with [0, 1] coordinates).

    Args:
        input: ``N×C×H×W``.
        point_coords: ``N×P×2`` or ``N×Hg×Wg×2`` (x, y) in [0, 1] × [0, 1] of the whole map.
        kwargs: passed to ``F.grid_sample`` (``align_corners`` defaults to False: 0 and 1 are
            the outer edges of the border pixels).
    Returns:
        ``N×C×P`` or ``N×C×Hg×Wg``.
    """
    add_dim = point_coords.dim() == 3
    if add_dim:
        point_coords = point_coords.unsqueeze(2)
    kwargs.setdefault("align_corners", False)
    # [0, 1] -> [-1, 1] with one temporary (the oversampled point sets are tens of millions of values).
    grid = point_coords.to(input.dtype) * 2.0
    out = F.grid_sample(input, grid.sub_(1.0), **kwargs)
    if add_dim:
        out = out.squeeze(3)
    return out


def calculate_uncertainty(logits: torch.Tensor) -> torch.Tensor:
    """Uncertainty of mask logits = ``-|logit|`` (highest at the decision boundary). Shape kept."""
    return -torch.abs(logits)


def get_uncertain_point_coords_with_randomness(
    coarse_logits: torch.Tensor,
    uncertainty_func: Callable[[torch.Tensor], torch.Tensor],
    num_points: int,
    oversample_ratio: float,
    importance_sample_ratio: float,
) -> torch.Tensor:
    """PointRend training points: the most uncertain of ``oversample_ratio·num_points`` random
    points (``importance_sample_ratio`` of them) plus fresh uniform random points.

    Args:
        coarse_logits: ``N×1×H×W`` mask logits.
        uncertainty_func: ``N×1×P`` logits -> ``N×1×P`` uncertainty.
    Returns:
        ``N×num_points×2`` (x, y) in [0, 1], on ``coarse_logits``' device.
    """
    if oversample_ratio < 1:
        raise ValueError(f"oversample_ratio must be >= 1, got {oversample_ratio}")
    if not 0 <= importance_sample_ratio <= 1:
        raise ValueError(f"importance_sample_ratio must be in [0, 1], got {importance_sample_ratio}")
    num_boxes = coarse_logits.shape[0]
    device = coarse_logits.device
    num_sampled = int(num_points * oversample_ratio)
    point_coords = torch.rand(num_boxes, num_sampled, 2, device=device)
    point_logits = point_sample(coarse_logits, point_coords)
    point_uncertainties = uncertainty_func(point_logits)
    num_uncertain = int(importance_sample_ratio * num_points)
    num_random = num_points - num_uncertain
    # The loss is a mean / sum over points, so their order does not matter: skip sorting the k
    # selected points (half of topk's time). torch selects the same set either way (nth_element)
    # unless k·64 <= n, where the sorted variant partial-sorts and may break ties differently.
    keep_order = num_uncertain * 64 <= num_sampled
    idx = torch.topk(point_uncertainties[:, 0, :], k=num_uncertain, dim=1, sorted=keep_order)[1]
    if point_coords.dtype == torch.float32:
        # Gather each (x, y) pair as one 64-bit word: a bit-exact copy, twice as fast as
        # gathering two float32 columns through an expanded index; on the 2-D view (N×P words)
        # torch's CPU gather is another 7x faster than with a trailing dimension of 1.
        words = point_coords.view(torch.int64).squeeze(-1)
        point_coords = words.gather(1, idx).unsqueeze(-1).view(torch.float32)
    else:
        point_coords = torch.gather(point_coords, 1, idx[:, :, None].expand(-1, -1, 2))
    if num_random > 0:
        point_coords = torch.cat([point_coords, torch.rand(num_boxes, num_random, 2, device=device)], dim=1)
    return point_coords


def resize_target_masks(masks: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """``T×H×W`` target masks -> ``T×h×w`` float32, bilinear with ``align_corners=False``: the
    value :func:`point_sample` reads at the centre of each cell of an ``h×w`` grid."""
    masks = masks.float()
    if masks.shape[0] == 0:
        return masks.new_zeros((0,) + tuple(size))
    if tuple(masks.shape[-2:]) == tuple(size):
        return masks
    return F.interpolate(masks[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
