"""SiMaskFormer's transformer decoder (``docs/simaskformer.md``).

Pipeline of one forward:

1. The multi-scale features (given low resolution first) are flattened into the memory in the
   order high resolution first (1/8, 1/16, 1/32).
2. **Two-stage query selection** (``two_stage``; :mod:`.query_selection`): ``enc_output`` + LN on
   every token, then the Q tokens with the lowest predicted matching cost (**UOME** on) or the
   highest interm class score (UOME off). Separate interm heads predict their class, box
   (proposal + MLP) and mask (MLP · mask features): ``interm_outputs``. The decoder starts from
   the selected features, their box and their mask, all detached; with ``INITIALIZE_BOX_TYPE``
   "bitmask" the box is replaced by the tight box of (mask > 0).
3. **Mask denoising** (training, DN "seg"; :mod:`.denoising`): noised GT copies are prepended.
4. ``dec_layers`` layers (post-norm): self-attention (with the DN mask) → cross-attention
   (:mod:`.mask_guided_attention`) → FFN → ``decoder_norm``; then the shared box MLP and mask
   MLP refine the references (b' = b + Δb, R' = R + mask_embed(h)·F, detached between layers;
   the emitted box/mask use the previous layer's undetached reference, "look forward twice").
5. Prediction set 0 (``initial_pred``) is the initial state: class of decoder_norm(tgt), box and
   mask = the references.

**AMR** (``amr``, Adaptive Mask Refinement) bundles the three mask-driven mechanisms. With AMR on:
each layer's positional query is ``ref_mask_head([mask embedding of R | sine(centre)])``
(:mod:`.mask_embedding`, ``TYPE_MASK_EMBED``), the cross-attention samples per
``TYPE_SAMPLING_LOCATIONS`` (default "mask": inside the tight box of R > 0, gated by R > 0), and the
mask reference is refined iteratively (emitted mask R + Δm; original-implementation quirk R + 2Δm, difference D1).
**AMR off** means exactly: (a) no mask reference is carried between layers — every layer predicts
its mask directly as ``mask_embed(h)·F`` (the initial prediction set still emits the interm /
noised-GT mask); (b) the positional query is ``ref_mask_head(sine(cx, cy, w, h))`` of the query's
predicted box (DINO; same MLP shape); (c) the cross-attention samples inside the predicted box
without gating ("bbox", whatever ``TYPE_SAMPLING_LOCATIONS`` says) and no mask embedding module
is built. Box refinement, two-stage selection, "bitmask" box initialisation and DN are unchanged.

The original implementation's behaviour is selected per difference (IDs of ``docs/simaskformer.md``), each by
the argument of the module that honours it: ``emit_mask_two_deltas`` (D1, this decoder),
``multiplicative_gate`` (D3, the cross-attention), ``original_box_convention`` (D4 / D21, the mask boxes
here and in DN), ``original_mask_noise`` (D8, DN), ``select_invalid_tokens`` (D22, query selection) and
``column_first_sine_table`` (D23, the mask embedding). ``MODEL.SIMASKFORMER.ORIGINAL_QUIRKS`` sets them all
(:func:`original_implementation_items`, read by ``from_config``). Everything is vectorised over queries
and pixels; loops run over feature levels, layers and (in DN) images only.
"""
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn as nn

from skinformer.config import configurable
from skinformer.layers import MLP, ffn_relu, gen_sineembed_for_position, mask_product

from .build import TRANSFORMER_DECODER_REGISTRY
from .denoising import DENOISERS, DenoisingQueries, split_dn_outputs
from .mask_boxes import MASK_BOX_INIT, inverse_sigmoid, mask_boxes_cxcywh
from .mask_embedding import build_mask_embedding
from .mask_guided_attention import SAMPLING_TYPES, MaskGuidedDeformableAttention
from .query_selection import QUERY_RANKINGS, ProposalCostPredictor, c2_xavier_fill, gen_encoder_output_proposals

__all__ = ["SiMaskFormerDecoder", "SiMaskFormerDecoderLayer", "original_implementation_items"]


def original_implementation_items(enabled: bool) -> Dict[str, bool]:
    """``MODEL.SIMASKFORMER.ORIGINAL_QUIRKS`` resolved into the decoder's named arguments: all True
    reproduces the original implementation's decoder, all False is the corrected one."""
    enabled = bool(enabled)
    return {
        "emit_mask_two_deltas": enabled,  # D1
        "multiplicative_gate": enabled,  # D3
        "original_box_convention": enabled,  # D4, D21
        "original_mask_noise": enabled,  # D8
        "select_invalid_tokens": enabled,  # D22
        "column_first_sine_table": enabled,  # D23
    }


class SiMaskFormerDecoderLayer(nn.Module):
    """Post-norm deformable decoder layer: self-attn → mask-guided cross-attn → FFN (DINO order).

    ``forward(tgt B×N×C, query_pos B×N×C, memory B×S×C, spatial_shapes, level_start_index,
    attn_mask (N×N bool or None), pred_boxes B×N×4, mask_boxes B×N×4 | None,
    mask B×N×H×W bool | None) -> B×N×C``.
    """

    def __init__(self, d_model: int = 256, d_ffn: int = 2048, dropout: float = 0.0, n_levels: int = 3,
                 n_heads: int = 8, n_points: int = 8, sampling: str = "mask", multiplicative_gate: bool = False):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, n_heads, dropout=dropout, batch_first=True)
        self.dropout2 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)
        self.cross_attn = MaskGuidedDeformableAttention(d_model, n_levels, n_heads, n_points, sampling,
                                                        multiplicative_gate)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.dropout3 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.dropout4 = nn.Dropout(dropout)
        self.norm3 = nn.LayerNorm(d_model)

    def forward(self, tgt, query_pos, memory, spatial_shapes, level_start_index, attn_mask, pred_boxes,
                mask_boxes, mask):
        """Self-attention, mask-guided deformable cross-attention, FFN (each post-norm):
        ``B×N×C -> B×N×C``."""
        q = k = tgt + query_pos
        tgt2 = self.self_attn(q, k, tgt, attn_mask=attn_mask, need_weights=False)[0]
        tgt = self.norm2(tgt + self.dropout2(tgt2))
        tgt2 = self.cross_attn(tgt + query_pos, memory, spatial_shapes, level_start_index, pred_boxes, mask_boxes,
                               mask)
        tgt = self.norm1(tgt + self.dropout1(tgt2))
        tgt2 = self.linear2(self.dropout3(ffn_relu(self.linear1(tgt))))
        return self.norm3(tgt + self.dropout4(tgt2))


def _zero_last_layer(mlp: MLP) -> MLP:
    nn.init.constant_(mlp.layers[-1].weight, 0)
    nn.init.constant_(mlp.layers[-1].bias, 0)
    return mlp


def _check_choice(key: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"MODEL.SIMASKFORMER.{key}: unknown value {value!r}, expected one of {sorted(choices)}")


@TRANSFORMER_DECODER_REGISTRY.register()
class SiMaskFormerDecoder(nn.Module):
    """SiMaskFormer decoder: UOME query selection, mask denoising, AMR layers (see module docstring).

    ``forward(multi_scale_features, mask_features, targets=None)``:

    Args:
        multi_scale_features: list of ``B×C×h_l×w_l``, **low resolution first** (1/32, 1/16, 1/8).
        mask_features: ``B×mask_dim×H4×W4``.
        targets: training only (DN), per image ``{"labels": int64 N, "masks": float N×Hp×Wp,
            "boxes": N×4 cxcywh normalised by the padded size}``.
    Returns:
        dict with ``pred_logits`` (``B×Q×(K+1)`` CE mode / ``B×Q×K`` focal mode), ``pred_masks``
        (``B×Q×H4×W4`` logits), ``pred_boxes`` (``B×Q×4`` cxcywh in [0, 1]), ``aux_outputs``
        (earlier prediction sets, earliest first, the initial prediction included),
        ``interm_outputs`` (two-stage), ``pred_proposal_cost`` (``B×Q``, UOME on) and, in training
        with active DN, ``dn_outputs = {"outputs": {..., "aux_outputs": [...]}, "num_groups": G,
        "single_pad": m, "pad_size": G·m}`` (DN query g·m + i = noised GT i of its image).
    """

    # Kernel of the mask products on CPU (set with the linear layers', MODEL.CPU_LINEAR_KERNEL).
    cpu_linear_kernel = "blas"

    @configurable
    def __init__(
        self,
        in_channels: int,
        mask_classification: bool = True,
        *,
        num_classes: int,
        hidden_dim: int = 256,
        num_queries: int = 100,
        nheads: int = 8,
        dropout: float = 0.0,
        dim_feedforward: int = 2048,
        dec_layers: int = 9,
        n_points: int = 8,
        num_feature_levels: int = 3,
        mask_dim: int = 256,
        enforce_input_project: bool = False,
        two_stage: bool = True,
        initial_pred: bool = True,
        initialize_box_type: str = "bitmask",
        dn: str = "seg",
        dn_noise_scale: float = 0.4,
        dn_num: int = 100,
        sampling_locations: str = "mask",
        mask_embed_type: str = "SumSinusoidalMask",
        semantic_ce_loss: bool = False,
        centre_from_mask_box: Optional[bool] = None,
        uome: bool = True,
        amr: bool = True,
        proposal_box_size: float = 0.1,
        emit_mask_two_deltas: bool = False,
        multiplicative_gate: bool = False,
        original_box_convention: bool = False,
        original_mask_noise: bool = False,
        select_invalid_tokens: bool = False,
        column_first_sine_table: bool = False,
    ):
        """
        Args:
            in_channels: channels of the multi-scale features.
            mask_classification: must be True (the decoder always classifies its masks).
            num_classes: K.
            semantic_ce_loss: CE mode (class head K+1, last = no-object) instead of focal (K).
            centre_from_mask_box: positional-query centre from the tight box of R > 0 instead of
                sigmoid(box); default: True for binary semantic models (CE mode and K == 1), as the original implementation.
            uome: rank encoder tokens by the predicted matching cost (else by interm class score).
            amr: Adaptive Mask Refinement (see the module docstring for what "off" means).
            emit_mask_two_deltas: emit R + 2Δm per layer as the original implementation (D1).
            multiplicative_gate: the original implementation's mask gate (D3), passed to the cross-attention.
            original_box_convention: the original implementation's mask boxes (D4, D21), here and in DN.
            original_mask_noise: the original implementation's DN mask noise (D8), passed to the denoiser.
            select_invalid_tokens: two-stage selection may pick invalid (edge) tokens (D22).
            column_first_sine_table: the original implementation's sine-table order (D23), passed to the
                mask embedding.
            Other arguments mirror the MODEL.SIMASKFORMER keys.
        """
        super().__init__()
        if not mask_classification:
            raise ValueError("SiMaskFormerDecoder always classifies its masks: mask_classification must be True")
        _check_choice("INITIALIZE_BOX_TYPE", initialize_box_type, MASK_BOX_INIT)
        _check_choice("DN", dn, DENOISERS)
        _check_choice("TYPE_SAMPLING_LOCATIONS", sampling_locations, SAMPLING_TYPES)
        if num_classes < 1:
            raise ValueError(f"MODEL.SEM_SEG_HEAD.NUM_CLASSES must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.hidden_dim = hidden_dim
        self.num_queries = num_queries
        self.num_layers = dec_layers
        self.num_feature_levels = num_feature_levels
        self.two_stage = two_stage
        self.initial_pred = initial_pred
        self.initialize_box_type = initialize_box_type
        self.semantic_ce_loss = semantic_ce_loss
        self.centre_from_mask_box = (semantic_ce_loss and num_classes == 1) if centre_from_mask_box is None \
            else centre_from_mask_box
        self.uome = uome
        self.amr = amr
        self.emit_mask_two_deltas = emit_mask_two_deltas
        self.original_box_convention = original_box_convention
        self.select_invalid_tokens = select_invalid_tokens
        self.proposal_box_size = proposal_box_size

        # Input projections (identity when the widths already match).
        self.input_proj = nn.ModuleList()
        for _ in range(num_feature_levels):
            if in_channels != hidden_dim or enforce_input_project:
                conv = nn.Conv2d(in_channels, hidden_dim, kernel_size=1)
                c2_xavier_fill(conv)
                self.input_proj.append(conv)
            else:
                self.input_proj.append(nn.Identity())

        num_logits = num_classes + 1 if semantic_ce_loss else num_classes
        if two_stage:
            self.enc_output = nn.Linear(hidden_dim, hidden_dim)
            self.enc_output_norm = nn.LayerNorm(hidden_dim)
            self.proposal_head = ProposalCostPredictor(hidden_dim, hidden_dim // 2) if uome else None
            self.intern_class_embed = nn.Linear(hidden_dim, num_logits)
            self.intern_box_embed = _zero_last_layer(MLP(hidden_dim, hidden_dim, 4, 3))
            self.intern_mask_embed = MLP(hidden_dim, hidden_dim, mask_dim, 3)
        else:
            # Non-two-stage path: learned content queries and learned box logits.
            self.query_feat = nn.Embedding(num_queries, hidden_dim)
            self.query_box = nn.Embedding(num_queries, 4)
            nn.init.zeros_(self.query_box.weight)

        denoiser_cls = DENOISERS[dn]
        self.denoiser = denoiser_cls(num_classes, hidden_dim, dn_num, dn_noise_scale,
                                     original_mask_noise=original_mask_noise,
                                     original_box_convention=original_box_convention) \
            if denoiser_cls is not None else None

        self.class_embed = nn.Linear(hidden_dim, num_logits)
        self.decoder_norm = nn.LayerNorm(hidden_dim)
        # Shared by all layers.
        self.bbox_embed = _zero_last_layer(MLP(hidden_dim, hidden_dim, 4, 3))
        self.mask_embed = MLP(hidden_dim, hidden_dim, mask_dim, 3)

        layer_sampling = sampling_locations if amr else "bbox"
        self.layers = nn.ModuleList(
            SiMaskFormerDecoderLayer(hidden_dim, dim_feedforward, dropout, num_feature_levels, nheads, n_points,
                                     layer_sampling, multiplicative_gate)
            for _ in range(dec_layers)
        )
        self.ref_mask_head = MLP(2 * hidden_dim, hidden_dim, hidden_dim, 2)
        # Original-implementation init: xavier on every >1-d parameter of the stack, then the deformable-attention reset.
        for module in (self.layers, self.ref_mask_head):
            for p in module.parameters():
                if p.dim() > 1:
                    nn.init.xavier_uniform_(p)
        for layer in self.layers:
            layer.cross_attn._reset_parameters()
        # Built after the xavier pass so the CNN keeps its kaiming init (the original overwrote it, D15).
        self.mask_embedding = build_mask_embedding(mask_embed_type, hidden_dim, column_first_sine_table) \
            if amr else None
        if self.mask_embedding is not None and self.mask_embedding.out_dim != hidden_dim:
            raise ValueError(f"mask embedding width {self.mask_embedding.out_dim} != HIDDEN_DIM {hidden_dim}")

    @classmethod
    def from_config(cls, cfg, in_channels, mask_classification):
        """Keyword arguments from ``cfg.MODEL.SIMASKFORMER`` and ``MODEL.SEM_SEG_HEAD``, with
        ``ORIGINAL_QUIRKS`` resolved into the individual switches."""
        sim = cfg.MODEL.SIMASKFORMER
        head = cfg.MODEL.SEM_SEG_HEAD
        return {
            "in_channels": in_channels,
            "mask_classification": mask_classification,
            "num_classes": head.NUM_CLASSES,
            "hidden_dim": sim.HIDDEN_DIM,
            "num_queries": sim.NUM_OBJECT_QUERIES,
            "nheads": sim.NHEADS,
            "dropout": sim.DROPOUT,
            "dim_feedforward": sim.DIM_FEEDFORWARD,
            "dec_layers": sim.DEC_LAYERS,
            "n_points": sim.DEC_N_POINTS,
            "num_feature_levels": head.NUM_FEATURE_LEVELS,
            "mask_dim": head.MASK_DIM,
            "enforce_input_project": sim.ENFORCE_INPUT_PROJ,
            "two_stage": sim.TWO_STAGE,
            "initial_pred": sim.INITIAL_PRED,
            "initialize_box_type": sim.INITIALIZE_BOX_TYPE,
            "dn": sim.DN,
            "dn_noise_scale": sim.DN_NOISE_SCALE,
            "dn_num": sim.DN_NUM,
            "sampling_locations": sim.TYPE_SAMPLING_LOCATIONS,
            "mask_embed_type": sim.TYPE_MASK_EMBED,
            "semantic_ce_loss": sim.SEMANTIC_CE_LOSS,
            "uome": sim.UOME,
            "amr": sim.AMR,
            "proposal_box_size": sim.PROPOSAL_BOX_SCALE,
            # the one switch, resolved here into the items each module honours
            **original_implementation_items(sim.ORIGINAL_QUIRKS),
        }

    # ------------------------------------------------------------------------------------------
    def _flatten_memory(self, multi_scale_features: Sequence[torch.Tensor]):
        if len(multi_scale_features) != self.num_feature_levels:
            raise ValueError(
                f"SiMaskFormerDecoder expects {self.num_feature_levels} feature levels "
                f"(MODEL.SEM_SEG_HEAD.NUM_FEATURE_LEVELS), got {len(multi_scale_features)}"
            )
        srcs, shapes = [], []
        # Given low resolution first; the memory is high resolution first.
        for idx in reversed(range(self.num_feature_levels)):
            x = self.input_proj[idx](multi_scale_features[idx])
            shapes.append((x.shape[-2], x.shape[-1]))
            srcs.append(x.flatten(2).transpose(1, 2))
        memory = torch.cat(srcs, dim=1)
        device = memory.device
        spatial_shapes = torch.as_tensor(shapes, dtype=torch.long, device=device)
        sizes = spatial_shapes.prod(1)
        level_start_index = torch.cat([sizes.new_zeros(1), sizes.cumsum(0)[:-1]])
        return memory, shapes, spatial_shapes, level_start_index

    def _select_queries(self, memory, shapes, mask_features):
        """Two-stage selection -> (tgt, refbox logits, refmask logits, interm_outputs, proposal cost)."""
        bsz, num_tokens, dim = memory.shape
        if num_tokens < self.num_queries:
            raise ValueError(
                f"SiMaskFormerDecoder: only {num_tokens} encoder tokens for {self.num_queries} queries "
                "(MODEL.SIMASKFORMER.NUM_OBJECT_QUERIES); use a larger input or fewer queries"
            )
        proposals, valid = gen_encoder_output_proposals(shapes, self.proposal_box_size, memory.device, memory.dtype)
        memory = memory.masked_fill(~valid[None, :, None], 0.0)
        output_memory = self.enc_output_norm(self.enc_output(memory))
        costs = self.proposal_head(output_memory) if self.uome else None
        index = QUERY_RANKINGS[self.uome](costs, lambda: self.intern_class_embed(output_memory), valid,
                                          self.num_queries, self.select_invalid_tokens, self.semantic_ce_loss)
        tgt_undetach = output_memory.gather(1, index[..., None].expand(-1, -1, dim))
        interm_class = self.intern_class_embed(tgt_undetach)
        interm_box = self.intern_box_embed(tgt_undetach) + proposals[index]
        interm_mask = mask_product(self.intern_mask_embed(tgt_undetach), mask_features, self.cpu_linear_kernel)
        interm = {"pred_logits": interm_class, "pred_masks": interm_mask, "pred_boxes": interm_box.sigmoid()}
        proposal_cost = costs.gather(1, index) if costs is not None else None

        refmask = interm_mask.detach()
        box_init = MASK_BOX_INIT[self.initialize_box_type]
        if box_init is None:
            refbox = interm_box.detach()
        else:
            # Logits in, foreground = logit > 0 (no H×W bool temporary).
            refbox = inverse_sigmoid(box_init(refmask, self.original_box_convention)).to(refmask.dtype)
        return tgt_undetach.detach(), refbox, refmask, interm, proposal_cost

    def _learned_queries(self, bsz, mask_features):
        tgt = self.query_feat.weight[None].expand(bsz, -1, -1)
        refbox = self.query_box.weight[None].expand(bsz, -1, -1)
        refmask = mask_product(self.mask_embed(self.decoder_norm(tgt)), mask_features, self.cpu_linear_kernel)
        return tgt, refbox, refmask

    def decode(self, tgt: torch.Tensor, refbox: torch.Tensor, refmask: torch.Tensor, memory: torch.Tensor,
               spatial_shapes: torch.Tensor, level_start_index: torch.Tensor, mask_features: torch.Tensor,
               attn_mask: Optional[torch.Tensor] = None) -> List[Dict[str, torch.Tensor]]:
        """Run the layers from an initial state.

        Args:
            tgt: ``B×N×C`` content; refbox: ``B×N×4`` box logits; refmask: ``B×N×H4×W4`` mask logits.
            attn_mask: ``N×N`` bool (True = blocked) or None.
        Returns:
            the prediction sets (initial first if ``initial_pred``), dicts of ``pred_logits``,
            ``pred_masks``, ``pred_boxes``.
        """
        predictions = []
        if self.initial_pred:
            predictions.append({
                "pred_logits": self.class_embed(self.decoder_norm(tgt)),
                "pred_masks": refmask,
                "pred_boxes": refbox.sigmoid(),
            })
        h4, w4 = mask_features.shape[-2:]
        tables = self.mask_embedding.prepare(h4, w4, mask_features.device, mask_features.dtype) \
            if self.amr else None
        num_feats = self.hidden_dim // 2
        x = tgt
        box_prev, box_ref = refbox, refbox.detach()
        mask_prev, mask_ref = refmask, refmask.detach()
        for layer in self.layers:
            pred_boxes = box_ref.sigmoid()
            if self.amr:
                # The logits themselves serve as the mask (foreground = R > 0): the box and the
                # gate threshold them where they read, without an H×W bool temporary.
                mask = mask_ref
                mask_boxes = mask_boxes_cxcywh(mask_ref, self.original_box_convention).to(pred_boxes.dtype)
                centre = mask_boxes[..., :2] if self.centre_from_mask_box else pred_boxes[..., :2]
                pos_in = torch.cat([self.mask_embedding(mask_ref, tables),
                                    gen_sineembed_for_position(centre, num_feats)], dim=-1)
            else:
                mask = mask_boxes = None
                pos_in = gen_sineembed_for_position(pred_boxes, num_feats)
            query_pos = self.ref_mask_head(pos_in)
            x = layer(x, query_pos, memory, spatial_shapes, level_start_index, attn_mask, pred_boxes, mask_boxes,
                      mask)
            hs = self.decoder_norm(x)

            delta_box = self.bbox_embed(hs)
            out_box = (box_prev + delta_box).sigmoid()
            box_prev = box_ref + delta_box
            box_ref = box_prev.detach()

            mask_emb = self.mask_embed(hs)
            if self.amr:
                if torch.is_grad_enabled() or self.emit_mask_two_deltas:
                    delta_mask = mask_product(mask_emb, mask_features, self.cpu_linear_kernel)
                    new_mask = mask_ref + delta_mask
                    # The original implementation (D1) emits R + 2Δm; corrected: R + Δm, through the undetached
                    # previous reference (look forward twice, like the boxes).
                    out_mask = new_mask + delta_mask if self.emit_mask_two_deltas else mask_prev + delta_mask
                else:
                    # Inference: R + Δm in one product (same value as above, no gradient paths to keep).
                    new_mask = mask_product(mask_emb, mask_features, self.cpu_linear_kernel, add=mask_ref)
                    out_mask = new_mask
                mask_prev, mask_ref = new_mask, new_mask.detach()
            else:
                out_mask = mask_product(mask_emb, mask_features, self.cpu_linear_kernel)
            predictions.append({"pred_logits": self.class_embed(hs), "pred_masks": out_mask, "pred_boxes": out_box})
        return predictions

    def forward(self, multi_scale_features: Sequence[torch.Tensor], mask_features: torch.Tensor,
                targets: Optional[Sequence[Dict[str, torch.Tensor]]] = None) -> Dict:
        """Decode queries over the multi-scale features: last-layer predictions plus ``aux_outputs``, and
        when present ``dn_outputs``, ``interm_outputs`` and ``pred_proposal_cost``."""
        memory, shapes, spatial_shapes, level_start_index = self._flatten_memory(multi_scale_features)
        bsz = memory.shape[0]
        interm, proposal_cost = None, None
        if self.two_stage:
            tgt, refbox, refmask, interm, proposal_cost = self._select_queries(memory, shapes, mask_features)
        else:
            tgt, refbox, refmask = self._learned_queries(bsz, mask_features)

        dn: Optional[DenoisingQueries] = None
        if self.training and self.denoiser is not None and targets is not None:
            if len(targets) != bsz:
                raise ValueError(f"SiMaskFormerDecoder: {len(targets)} targets for a batch of {bsz} images")
            dn = self.denoiser(targets, self.num_queries, tuple(mask_features.shape[-2:]))
        attn_mask = None
        if dn is not None:
            tgt = torch.cat([dn.content.to(tgt.dtype), tgt], dim=1)
            refbox = torch.cat([dn.box_logits.to(refbox.dtype), refbox], dim=1)
            refmask = torch.cat([dn.mask_logits.to(refmask.dtype), refmask], dim=1)
            attn_mask = dn.attn_mask

        predictions = self.decode(tgt, refbox, refmask, memory, spatial_shapes, level_start_index, mask_features,
                                  attn_mask)

        out: Dict = {}
        if dn is not None:
            dn_preds, predictions = split_dn_outputs(predictions, dn.pad_size)
            out["dn_outputs"] = {
                "outputs": {**dn_preds[-1], "aux_outputs": dn_preds[:-1]},
                "num_groups": dn.num_groups,
                "single_pad": dn.single_pad,
                "pad_size": dn.pad_size,
            }
        elif self.training and self.denoiser is not None:
            # Keep the label embedding in the graph when DN is skipped (DDP unused-parameter check).
            predictions[-1]["pred_logits"] = predictions[-1]["pred_logits"] + \
                0.0 * self.denoiser.label_enc.weight.sum()
        out.update(predictions[-1])
        out["aux_outputs"] = predictions[:-1]
        if interm is not None:
            out["interm_outputs"] = interm
        if proposal_cost is not None:
            out["pred_proposal_cost"] = proposal_cost
        return out
