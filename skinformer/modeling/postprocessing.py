import torch
import torch.nn.functional as F

__all__ = ["sem_seg_postprocess"]


def sem_seg_postprocess(result: torch.Tensor, img_size, output_height: int, output_width: int) -> torch.Tensor:
    """Crop padded ``K×H_pad×W_pad`` scores to the network input size ``img_size`` (h, w) and
    resize them bilinearly to the original ``output_height × output_width``."""
    result = result[:, : img_size[0], : img_size[1]].expand(1, -1, -1, -1)
    result = F.interpolate(result, size=(output_height, output_width), mode="bilinear", align_corners=False)[0]
    return result
