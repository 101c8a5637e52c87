"""Two-stage query selection for SiMaskFormer (UOME, ``docs/simaskformer.md``).

Every encoder token gets a proposal box (its pixel centre, side ``box_size·2^level``); tokens whose
proposal leaves (0.01, 0.99) are invalid (their memory is zeroed and their box logits are +inf).
The K = Q queries are the tokens

* with the **lowest predicted matching cost** (UOME on, :class:`ProposalCostPredictor`), or
* with the highest interm class score (UOME off: MaskDINO's ranking; in CE mode the highest
  foreground softmax probability, in focal mode the highest logit).

Corrected default: invalid tokens are never preferred over valid ones; ``include_invalid=True`` ranks them
like any other token, as the original implementation (difference D22).
"""
import math
from typing import List, Sequence, Tuple

import torch
import torch.nn as nn

__all__ = ["ProposalCostPredictor", "gen_encoder_output_proposals", "rank_by_cost", "rank_by_class",
           "QUERY_RANKINGS", "c2_xavier_fill"]


def c2_xavier_fill(module: nn.Module) -> None:
    """Caffe2's XavierFill for a Linear / Conv: kaiming_uniform(a=1) weights, zero bias."""
    nn.init.kaiming_uniform_(module.weight, a=1)
    if module.bias is not None:
        nn.init.constant_(module.bias, 0)


class ProposalCostPredictor(nn.Module):
    """UOME head: ``...×dim`` token features -> ``...`` predicted matching cost in (0, 1).

    LN(dim) → Linear(dim→hidden) → ReLU → Dropout(0.2) → LN(hidden) → Linear(hidden→1) → sigmoid.
    """

    def __init__(self, dim: int = 256, hidden_dim: int = 128, dropout: float = 0.2):
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(dim), nn.Linear(dim, hidden_dim), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.LayerNorm(hidden_dim), nn.Linear(hidden_dim, 1),
        )
        for m in self.net:
            if isinstance(m, nn.Linear):
                c2_xavier_fill(m)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``...×dim -> ...`` predicted matching cost in (0, 1)."""
        return self.net(x).squeeze(-1).sigmoid()


def gen_encoder_output_proposals(spatial_shapes: Sequence[Tuple[int, int]], box_size: float, device,
                                 dtype=torch.float32) -> Tuple[torch.Tensor, torch.Tensor]:
    """Proposal boxes of all encoder tokens (levels in memory order, finest first).

    Returns:
        ``S×4`` inverse-sigmoid cxcywh proposals (+inf for invalid tokens) and ``S`` bool valid.
    """
    proposals: List[torch.Tensor] = []
    for lvl, (h, w) in enumerate(spatial_shapes):
        ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h
        xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        wh = torch.full_like(gx, box_size * 2.0 ** lvl)
        proposals.append(torch.stack([gx, gy, wh, wh], dim=-1).reshape(-1, 4))
    props = torch.cat(proposals, dim=0)
    valid = ((props > 0.01) & (props < 0.99)).all(dim=-1)
    unsig = torch.log(props / (1 - props))
    unsig = unsig.masked_fill(~valid[:, None], math.inf)
    return unsig.to(dtype), valid


def rank_by_cost(costs: torch.Tensor, class_logits_fn, valid: torch.Tensor, k: int, include_invalid: bool,
                 ce_mode: bool) -> torch.Tensor:
    """Indices (``B×k``) of the k tokens with the lowest predicted cost ``costs`` (``B×S``)."""
    key = costs.detach()
    if not include_invalid:  # D22
        key = key.masked_fill(~valid[None], math.inf)
    return torch.topk(key, k, dim=1, largest=False).indices


def rank_by_class(costs, class_logits_fn, valid: torch.Tensor, k: int, include_invalid: bool,
                  ce_mode: bool) -> torch.Tensor:
    """Indices (``B×k``) of the k tokens with the highest interm class score (MaskDINO)."""
    with torch.no_grad():
        logits = class_logits_fn()
        score = logits.softmax(-1)[..., :-1].amax(-1) if ce_mode else logits.amax(-1)
    if not include_invalid:  # D22
        score = score.masked_fill(~valid[None], -math.inf)
    return torch.topk(score, k, dim=1, largest=True).indices


# UOME on/off -> ranking of the encoder tokens.
QUERY_RANKINGS = {
    True: rank_by_cost,
    False: rank_by_class,
}
