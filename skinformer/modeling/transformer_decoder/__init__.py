"""Mask-transformer decoders (registered in ``TRANSFORMER_DECODER_REGISTRY``).

Decoder contract (every registered decoder):
``decoder(multi_scale_features, mask_features, targets=None) -> dict`` with

* ``multi_scale_features``: list of ``B×C×h_l×w_l``, low resolution first (1/32, 1/16, 1/8);
* ``mask_features``: ``B×C×H/4×W/4``;
* ``targets`` (training only): per image ``{"labels": int64 N, "masks": float N×Hp×Wp (padded
  input resolution), "boxes": N×4 cxcywh normalised by the padded image size}``.

Returned keys:

* ``"pred_logits"``: ``B×Q×(K+1)`` (CE mode, last = no-object) or ``B×Q×K`` (focal mode);
* ``"pred_masks"``: ``B×Q×H/4×W/4`` logits;
* ``"pred_boxes"``: ``B×Q×4`` cxcywh in [0, 1] (optional);
* ``"aux_outputs"``: list of dicts with the same keys for the earlier prediction sets (earliest
  first, including the initial prediction);
* ``"interm_outputs"``: the two-stage predictions (optional);
* ``"pred_proposal_cost"``: ``B×Q`` in (0, 1), the UOME predicted matching cost of the
  selected tokens (optional);
* ``"dn_outputs"``: ``{"outputs": {pred_logits, pred_masks, pred_boxes, "aux_outputs"},
  "num_groups": G, "single_pad": m}`` (optional, training only): DN query ``g·m + i`` is the
  noised copy of ground truth ``i`` of its image; slots ``i >= n_b`` are padding (no-object).
"""
from .build import TRANSFORMER_DECODER_REGISTRY, build_transformer_decoder
from .mask2former_decoder import MultiScaleMaskedTransformerDecoder
from .simaskformer_decoder import SiMaskFormerDecoder, SiMaskFormerDecoderLayer

__all__ = ["TRANSFORMER_DECODER_REGISTRY", "build_transformer_decoder", "MultiScaleMaskedTransformerDecoder",
           "SiMaskFormerDecoder", "SiMaskFormerDecoderLayer"]
