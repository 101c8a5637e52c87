"""Mask denoising (DN = "seg") for SiMaskFormer's decoder (``docs/simaskformer.md``).

During training, ``G = dn_num // m`` groups (m = the largest number of GT objects of an image in
the batch) of noised copies of the ground truth are decoded next to the matching queries. DN
query ``g·m + i`` of image b is the noised copy of GT ``i`` of image b; slots ``i ≥ n_b`` are
padding (content 0, box and mask logits 0). Each copy gets

* label noise: with probability ``0.5·noise_scale`` a uniformly random class in ``[0, K)``;
* mask noise: a random affine warp of the GT mask (rotation ``U[-45°, 45°)·ns``, scale
  ``U[1 - ns/2, 1 + ns/2)``, translation up to ``ns/2`` of the GT box size), sampled at the
  mask-feature resolution; its reference is the inverse sigmoid of the noised mask;
* box = tight box of (noised mask > 0): box noise comes only through the mask.

Corrected defaults vs. the original implementation (``original_mask_noise=True`` reproduces it, difference D8): the
translation
is in pixels with a symmetric sign (the original implementation puts pixel offsets into the normalised [-1, 1] affine
matrix, so they are halved and point the other way, and only non-negative offsets are drawn),
rotation and scaling are about the object's centre in pixel space (the original implementation: about the image
centre in normalised space), the mask is sampled directly at the low-resolution pixel centres
(the original implementation: warp at full resolution, then nearest-resize — reproduced exactly without the
full-resolution buffer), the mask logits are float32 clamped to ±11.5 (the original implementation: eps 1e-11 and a
float16 cast, ±25.3), and an empty noised mask gets the whole image as its box. A single DN mask,
empty images and CPU tensors all work (differences D8/D9).

The self-attention mask (``(D+Q)×(D+Q)``, True = blocked) keeps the matching queries from seeing
any DN query and each DN group from seeing the other groups (DN queries see the matching ones).
"""
import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .mask_boxes import inverse_sigmoid, mask_boxes_cxcywh

__all__ = [
    "DenoisingQueries",
    "MaskDenoiser",
    "random_affine_mask_noise",
    "dn_attention_mask",
    "split_dn_outputs",
    "DENOISERS",
]

# Logit clamp of the DN mask references: corrected float32 (±11.5), original implementation 1e-11 then float16 (±25.3).
_DN_MASK_EPS = 1e-5
_DN_MASK_EPS_ORIGINAL = 1e-11


@dataclass
class DenoisingQueries:
    """The DN queries of one batch (prepended to the matching queries by the decoder).

    Attributes:
        content: ``B×D×C`` query content (label embeddings of the noised labels).
        box_logits: ``B×D×4`` inverse-sigmoid cxcywh reference boxes.
        mask_logits: ``B×D×h×w`` mask references at the mask-feature resolution.
        attn_mask: ``(D+Q)×(D+Q)`` bool self-attention mask, True = blocked.
        num_groups: G; single_pad: m; pad_size = D = G·m.
        known_labels: ``B×D`` noised labels (-1 for padding slots), for inspection.
    """

    content: torch.Tensor
    box_logits: torch.Tensor
    mask_logits: torch.Tensor
    attn_mask: torch.Tensor
    num_groups: int
    single_pad: int
    known_labels: torch.Tensor

    @property
    def pad_size(self) -> int:
        """Number of DN queries ``D = num_groups · single_pad``."""
        return self.num_groups * self.single_pad


def dn_attention_mask(num_groups: int, single_pad: int, num_queries: int, device=None) -> torch.Tensor:
    """``(D+Q)×(D+Q)`` bool mask (True = blocked) for DN groups of ``single_pad`` queries each."""
    pad = num_groups * single_pad
    total = pad + num_queries
    mask = torch.zeros((total, total), dtype=torch.bool, device=device)
    # Matching queries must not see the (GT-derived) DN queries.
    mask[pad:, :pad] = True
    # A DN group must not see another group's copies of the same GT.
    group = torch.arange(pad, device=device) // max(single_pad, 1)
    mask[:pad, :pad] = group[:, None] != group[None, :]
    return mask


def _sample_grid_base(out_size: Tuple[int, int], in_size: Tuple[int, int], original: bool, device) -> torch.Tensor:
    """``h×w×3`` homogeneous normalised (x, y, 1) coordinates where the warped mask is sampled.

    Corrected: the low-resolution pixel centres. Original implementation: the full-resolution pixel centres that
    ``F.interpolate(mode="nearest")`` picks (source index floor(i·in/out)) after a full-resolution warp.
    """
    (h, w), (hp, wp) = out_size, in_size
    if original:
        ys = torch.floor(torch.arange(h, device=device, dtype=torch.float64) * (hp / h))
        xs = torch.floor(torch.arange(w, device=device, dtype=torch.float64) * (wp / w))
        yn = ((2 * ys + 1) / hp - 1).float()
        xn = ((2 * xs + 1) / wp - 1).float()
    else:
        yn = (2 * torch.arange(h, device=device, dtype=torch.float32) + 1) / h - 1
        xn = (2 * torch.arange(w, device=device, dtype=torch.float32) + 1) / w - 1
    gy, gx = torch.meshgrid(yn, xn, indexing="ij")
    return torch.stack([gx, gy, torch.ones_like(gx)], dim=-1)


def random_affine_mask_noise(masks: torch.Tensor, boxes: torch.Tensor, noise_scale: float,
                             out_size: Tuple[int, int], num_copies: int = 1, original_mask_noise: bool = False,
                             generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Randomly warped copies of GT masks.

    Args:
        masks: ``T×Hp×Wp`` float GT masks (padded input resolution).
        boxes: ``T×4`` their cxcywh boxes normalised by (Wp, Hp, Wp, Hp).
        noise_scale: ns (0 = identity warp).
        out_size: (h, w) of the result (the mask-feature resolution).
        num_copies: independent noised copies per mask (the DN groups).
        original_mask_noise: the original implementation's warp (D8, see the module docstring).
        generator: optional RNG (tests); the global RNG otherwise.
    Returns:
        ``num_copies×T×h×w`` in [0, 1]: copy g of mask t at ``[g, t]``.
    """
    t, hp, wp = masks.shape
    h, w = out_size
    device = masks.device
    n = num_copies * t
    if t == 0:
        return masks.new_zeros((num_copies, 0, h, w))
    gen_device = generator.device if generator is not None else device
    u = torch.rand((n, 5), generator=generator, device=gen_device).to(device=device, dtype=torch.float32)
    ns = float(noise_scale)
    box_px = boxes.to(torch.float32).repeat(num_copies, 1) * boxes.new_tensor([wp, hp, wp, hp], dtype=torch.float32)
    cx, cy, bw, bh = box_px.unbind(-1)
    angle = (u[:, 0] * 90.0 - 45.0) * ns * (math.pi / 180.0)
    scale = 1.0 - ns / 2 + u[:, 1] * ns
    cos, sin = torch.cos(angle), torch.sin(angle)
    if original_mask_noise:
        off_x = u[:, 2] * (bw / 2 * ns)
        off_y = u[:, 3] * (bh / 2 * ns)
        theta = torch.stack([
            torch.stack([scale * cos, -scale * sin, (off_x + (1 - scale) * cx) / wp], dim=-1),
            torch.stack([scale * sin, scale * cos, (off_y + (1 - scale) * cy) / hp], dim=-1),
        ], dim=1)
    else:
        off_x = (2 * u[:, 2] - 1) * (bw / 2 * ns)
        off_y = (2 * u[:, 3] - 1) * (bh / 2 * ns)
        # Forward map in pixels: out = A (in - c) + c + t with A = s·R(angle). grid_sample needs
        # the inverse, in = A^-1 (out - c - t) + c, expressed in normalised coordinates
        # px = P n + o with P = diag(Wp/2, Hp/2), o = (Wp/2, Hp/2) (align_corners=False).
        inv_a = torch.stack([torch.stack([cos, sin], -1), torch.stack([-sin, cos], -1)], dim=1) / scale[:, None, None]
        p = torch.tensor([wp / 2.0, hp / 2.0], device=device)
        lin = inv_a * p[None, None, :] / p[None, :, None]  # P^-1 A^-1 P
        c = torch.stack([cx, cy], dim=-1)
        shift = torch.stack([off_x, off_y], dim=-1)
        trans = (torch.einsum("nij,nj->ni", inv_a, p - c - shift) + c - p) / p
        theta = torch.cat([lin, trans[:, :, None]], dim=2)
    base = _sample_grid_base((h, w), (hp, wp), original_mask_noise, device)  # h×w×3
    grid = torch.einsum("hwk,nik->nhwi", base, theta)  # n×h×w×2 (x, y)
    # Copies of one mask are stacked along the grid's height so every GT is read once (no
    # materialised num_copies×T×Hp×Wp input).
    grid = grid.view(num_copies, t, h, w, 2).permute(1, 0, 2, 3, 4).reshape(t, num_copies * h, w, 2)
    warped = F.grid_sample(masks[:, None].to(torch.float32), grid, mode="bilinear", padding_mode="zeros",
                           align_corners=False)
    warped = warped.view(t, num_copies, h, w).transpose(0, 1)
    return warped.clamp(0, 1).to(masks.dtype)


class MaskDenoiser(nn.Module):
    """Builds the DN queries from the targets (training only).

    Args:
        num_classes: K (the label embedding has K rows; noise draws classes in [0, K)).
        hidden_dim: query width.
        dn_num: DN query budget; groups = dn_num // max #GT.
        noise_scale: ns of the label and mask noise.
        original_mask_noise: the original implementation's mask noise and float16 mask logits (D8, see the
            module docstring).
        original_box_convention: the original implementation's box of the noised mask (D4, D21; see
            :func:`~.mask_boxes.mask_boxes_cxcywh`).
    """

    def __init__(self, num_classes: int, hidden_dim: int, dn_num: int = 100, noise_scale: float = 0.4,
                 original_mask_noise: bool = False, original_box_convention: bool = False):
        super().__init__()
        self.num_classes = num_classes
        self.dn_num = dn_num
        self.noise_scale = noise_scale
        self.original_mask_noise = original_mask_noise
        self.original_box_convention = original_box_convention
        self.label_enc = nn.Embedding(num_classes, hidden_dim)

    def forward(self, targets: Sequence[Dict[str, torch.Tensor]], num_queries: int, mask_size: Tuple[int, int],
                generator: Optional[torch.Generator] = None) -> Optional[DenoisingQueries]:
        """
        Args:
            targets: per image ``{"labels": int64 n, "masks": float n×Hp×Wp, "boxes": n×4 cxcywh}``.
            num_queries: Q, the number of matching queries (for the attention mask).
            mask_size: (h, w) of the mask features.
        Returns:
            :class:`DenoisingQueries`, or None when no image has a GT object or dn_num < max #GT.
        """
        counts = [int(t["labels"].numel()) for t in targets]
        single_pad = max(counts, default=0)
        if single_pad == 0 or self.dn_num // single_pad == 0:
            return None
        groups = self.dn_num // single_pad
        pad = groups * single_pad
        bsz = len(targets)
        device = self.label_enc.weight.device
        h, w = mask_size

        labels = torch.cat([t["labels"].to(device=device, dtype=torch.long) for t in targets])
        masks = torch.cat([t["masks"].to(device) for t in targets if t["labels"].numel() > 0])
        boxes = torch.cat([t["boxes"].to(device).reshape(-1, 4) for t in targets])
        img_idx = torch.repeat_interleave(torch.arange(bsz, device=device), torch.tensor(counts, device=device))
        obj_idx = torch.cat([torch.arange(c, device=device) for c in counts])
        num_gt = labels.numel()
        if bool(((labels < 0) | (labels >= self.num_classes)).any()):
            raise ValueError(
                f"MaskDenoiser: target labels must lie in [0, {self.num_classes}) "
                f"(MODEL.SEM_SEG_HEAD.NUM_CLASSES), got {labels.unique().tolist()}"
            )

        # Label noise (group-major order: copy g of GT t at g*T + t).
        noised = labels.repeat(groups)
        gen_device = generator.device if generator is not None else device
        flip = torch.rand(noised.shape, generator=generator, device=gen_device).to(device) < 0.5 * self.noise_scale
        random_cls = torch.randint(0, self.num_classes, noised.shape, generator=generator,
                                   device=gen_device).to(device)
        noised = torch.where(flip, random_cls, noised)

        # Mask noise, and the box of the noised mask.
        noised_masks = random_affine_mask_noise(masks.float(), boxes, self.noise_scale, (h, w), groups,
                                                self.original_mask_noise, generator).reshape(groups * num_gt, h, w)
        if self.original_mask_noise:
            mask_logits = inverse_sigmoid(noised_masks, _DN_MASK_EPS_ORIGINAL).half().float()
        else:
            mask_logits = inverse_sigmoid(noised_masks, _DN_MASK_EPS)
        box_logits = inverse_sigmoid(mask_boxes_cxcywh(noised_masks > 0, self.original_box_convention))

        # Scatter into the padded B×D slots: image b, slot g*m + i.
        rows = img_idx.repeat(groups)
        slots = (torch.arange(groups, device=device).repeat_interleave(num_gt) * single_pad + obj_idx.repeat(groups))
        content_vals = self.label_enc(noised)
        content = content_vals.new_zeros((bsz, pad, content_vals.shape[-1])).index_put((rows, slots), content_vals)
        box_ref = box_logits.new_zeros((bsz, pad, 4)).index_put((rows, slots), box_logits)
        mask_ref = mask_logits.new_zeros((bsz, pad, h, w)).index_put((rows, slots), mask_logits)
        known = torch.full((bsz, pad), -1, dtype=torch.long, device=device).index_put((rows, slots), noised)
        return DenoisingQueries(
            content=content,
            box_logits=box_ref,
            mask_logits=mask_ref,
            attn_mask=dn_attention_mask(groups, single_pad, num_queries, device),
            num_groups=groups,
            single_pad=single_pad,
            known_labels=known,
        )


def split_dn_outputs(predictions: List[Dict[str, torch.Tensor]], pad_size: int
                     ) -> Tuple[List[Dict[str, torch.Tensor]], List[Dict[str, torch.Tensor]]]:
    """Split every prediction set (dicts of ``B×(D+Q)×...`` tensors) into DN and matching parts."""
    # One split per tensor, not two slices: the backward of a split writes both gradients into
    # one buffer, where two slices would each zero-fill a full-size gradient and then add them.
    parts = [{k: v.split([pad_size, v.shape[1] - pad_size], dim=1) for k, v in p.items()} for p in predictions]
    dn = [{k: v[0] for k, v in p.items()} for p in parts]
    match = [{k: v[1] for k, v in p.items()} for p in parts]
    return dn, match


# DN -> denoiser constructor (None = no denoising). "standard" differs from "seg" only in the
# criterion (no mask DN loss); the original implementation's decoder builds the same mask DN queries for both.
DENOISERS = {
    "seg": MaskDenoiser,
    "standard": MaskDenoiser,
    "no": None,
}
