"""Mask embeddings for SiMaskFormer's positional query (AMR, ``TYPE_MASK_EMBED``).

Each decoder layer turns every query's current mask reference ``R`` (logits, ``B×N×H×W`` at 1/4
resolution) into a ``hidden_dim/2``·2-d vector that, concatenated with the sine embedding of the
query centre, becomes the positional query.

* ``"SumSinusoidalMask"`` (:class:`SumSinusoidalMaskEmbedding`, no parameters): the mean of a
  fixed per-pixel sine table over the boundary band 0.25 < sigmoid(R) < 0.75 (zero when the band
  is empty). The table entry of pixel (i, j) is ``[sine(i / (H-1)) | sine(j / (W-1))]``
  (row / y first, like the centre embedding ``[y | x]``; the original implementation puts the column
  first, difference D23, reproduced with ``column_first=True``). Because the table is a concatenation of a row table and a
  column table, its band mean equals the band's per-row counts times the row table plus its
  per-column counts times the column table, over the band size — computed that way, exactly, with
  O(H + W) table memory instead of a dense ``HW×256`` product.
* ``"MaskSimpleCNN"`` (:class:`LightMaskEncoder`): four 3×3 stride-2 convs (1→32→64→128→256) with
  BatchNorm + ReLU on sigmoid(R), global average pooling, Linear(256, hidden_dim).
  Note: in training mode its BatchNorm statistics mix all queries of the batch (DN and matching),
  as in the original implementation.

Both are built by :func:`build_mask_embedding` from the name; both are called as
``forward(mask_logits, tables)`` where ``tables = module.prepare(h, w, device, dtype)`` is computed
once per decoder forward.
"""
import math
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from skinformer.layers import gen_sineembed_for_position

__all__ = [
    "SumSinusoidalMaskEmbedding",
    "LightMaskEncoder",
    "MASK_EMBEDDINGS",
    "build_mask_embedding",
    "boundary_band",
    "per_pixel_sine_table",
]

# 0.25 < sigmoid(r) < 0.75  <=>  |r| < log(3): the band test without a sigmoid over every pixel.
_BAND_LOGIT = math.log(3.0)


def boundary_band(mask_logits: torch.Tensor) -> torch.Tensor:
    """Bool band of ``...×H×W`` mask logits: pixels with 0.25 < sigmoid(logit) < 0.75."""
    return mask_logits.abs() < _BAND_LOGIT


def _axis_table(n: int, num_feats: int, device, dtype) -> torch.Tensor:
    """``n×num_feats`` sine embedding of the coordinates linspace(0, 1, n) (inclusive, as the original implementation)."""
    coord = torch.arange(n, device=device, dtype=torch.float32) / max(n - 1, 1)
    # gen_sineembed_for_position returns [y | x]; feed the coordinate as y and keep that half.
    return gen_sineembed_for_position(torch.stack([coord, coord], dim=-1), num_feats)[:, :num_feats].to(dtype)


def per_pixel_sine_table(h: int, w: int, num_feats: int = 128, column_first: bool = False,
                         device=None, dtype=torch.float32) -> torch.Tensor:
    """The dense ``(H·W)×(2·num_feats)`` per-pixel table (row-major pixels), for reference / tests."""
    rows = _axis_table(h, num_feats, device, dtype)[:, None, :].expand(h, w, num_feats)
    cols = _axis_table(w, num_feats, device, dtype)[None, :, :].expand(h, w, num_feats)
    parts = (cols, rows) if column_first else (rows, cols)
    return torch.cat(parts, dim=-1).reshape(h * w, 2 * num_feats)


class SumSinusoidalMaskEmbedding(nn.Module):
    """Boundary-band mean of the per-pixel sine table: ``B×N×H×W`` logits -> ``B×N×(2·num_feats)``.

    Args:
        num_feats: sine features per axis (hidden_dim / 2).
        column_first: put the column part first (the original implementation's order, D23) instead of
            the row part.
    """

    def __init__(self, num_feats: int = 128, column_first: bool = False):
        super().__init__()
        self.num_feats = num_feats
        self.column_first = column_first

    @property
    def out_dim(self) -> int:
        """Embedding size ``2 · num_feats``."""
        return 2 * self.num_feats

    def prepare(self, h: int, w: int, device, dtype) -> Tuple[torch.Tensor, torch.Tensor]:
        """Row (``H×F``) and column (``W×F``) tables; call once per decoder forward."""
        return _axis_table(h, self.num_feats, device, dtype), _axis_table(w, self.num_feats, device, dtype)

    def forward(self, mask_logits: torch.Tensor,
                tables: Optional[Tuple[torch.Tensor, torch.Tensor]] = None) -> torch.Tensor:
        """``B×N×H×W`` mask logits -> ``B×N×(2·num_feats)``: mean row/column sine features over the
        boundary band; ``tables`` from :meth:`prepare` (computed if None)."""
        h, w = mask_logits.shape[-2:]
        if tables is None:
            tables = self.prepare(h, w, mask_logits.device, mask_logits.dtype)
        row_table, col_table = tables
        out_dtype = row_table.dtype
        # Pixel counts reach H·W (a DN padding slot, logits 0, is all band): past 65,504 at
        # 1024² input, so count, weight and divide in float32 even under float16 autocast.
        with torch.autocast(device_type=mask_logits.device.type, enabled=False):
            # Float 0/1 band built in place on one temporary (much faster on CPU than a bool
            # comparison followed by a float conversion); it feeds both reductions.
            band = mask_logits.detach().abs().to(torch.float32)
            band.lt_(_BAND_LOGIT)
            row_counts = band.sum(dim=-1)  # B×N×H
            col_counts = band.sum(dim=-2)  # B×N×W
            total = row_counts.sum(dim=-1, keepdim=True)
            row_part = row_counts @ row_table.float()  # B×N×F
            col_part = col_counts @ col_table.float()
            parts = (col_part, row_part) if self.column_first else (row_part, col_part)
            # + 1e-6 as the original implementation: an empty band gives an all-zero embedding.
            return (torch.cat(parts, dim=-1) / (total + 1e-6)).to(out_dtype)


class LightMaskEncoder(nn.Module):
    """Small CNN on mask probabilities: ``B×N×H×W`` logits -> ``B×N×out_dim``."""

    def __init__(self, out_dim: int = 256):
        super().__init__()
        chans = [1, 32, 64, 128, 256]
        layers = []
        for cin, cout in zip(chans[:-1], chans[1:]):
            layers += [nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(cout),
                       nn.ReLU(inplace=True)]
        self.convs = nn.Sequential(*layers)
        self.proj = nn.Linear(chans[-1], out_dim)
        self._out_dim = out_dim
        for m in self.convs:
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    @property
    def out_dim(self) -> int:
        """Embedding size."""
        return self._out_dim

    def prepare(self, h: int, w: int, device, dtype) -> None:
        """No tables are needed: returns None (same interface as :class:`SumSinusoidalMaskEmbedding`)."""
        return None

    def forward(self, mask_logits: torch.Tensor, tables=None) -> torch.Tensor:
        """``...×H×W`` mask logits -> ``...×out_dim`` (``tables`` is ignored)."""
        lead = mask_logits.shape[:-2]
        x = mask_logits.sigmoid().reshape(-1, 1, *mask_logits.shape[-2:])
        x = self.convs(x)
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.proj(x).reshape(*lead, -1)


# TYPE_MASK_EMBED -> constructor(hidden_dim, column_first); only the sine table has a column order.
MASK_EMBEDDINGS = {
    "SumSinusoidalMask": lambda hidden_dim, column_first: SumSinusoidalMaskEmbedding(hidden_dim // 2, column_first),
    "MaskSimpleCNN": lambda hidden_dim, column_first: LightMaskEncoder(hidden_dim),
}


def build_mask_embedding(name: str, hidden_dim: int, column_first_sine_table: bool = False) -> nn.Module:
    """The ``TYPE_MASK_EMBED`` module; ``column_first_sine_table`` (D23) applies to "SumSinusoidalMask" only."""
    if name not in MASK_EMBEDDINGS:
        raise ValueError(
            f"MODEL.SIMASKFORMER.TYPE_MASK_EMBED: unknown mask embedding '{name}', "
            f"expected one of {sorted(MASK_EMBEDDINGS)}"
        )
    if hidden_dim % 2:
        raise ValueError(f"MODEL.SIMASKFORMER.HIDDEN_DIM must be even for the sine embeddings, got {hidden_dim}")
    return MASK_EMBEDDINGS[name](hidden_dim, column_first_sine_table)
