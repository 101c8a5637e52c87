"""Config keys of the mask-classification family (Mask2Former and SiMaskFormer).

Two model nodes share one key set (:func:`_add_mask_classification_keys`):

* ``MODEL.MASK_FORMER``: read by the ``MaskFormer`` meta-architecture and the
  ``MultiScaleMaskedTransformerDecoder`` (Mask2Former; defaults = Mask2Former's).
* ``MODEL.SIMASKFORMER``: read by the ``SiMaskFormer`` meta-architecture and the
  ``SiMaskFormerDecoder`` (defaults = the original SiMaskFormer implementation's *configured* values, i.e.
  what its yamls set, see ``docs/simaskformer.md``), plus SiMaskFormer's own keys.

``MODEL.SEM_SEG_HEAD`` gains the pixel-decoder keys. Where the original implementation has a quirk
(``docs/simaskformer.md``, differences D1-D23) the default here is the corrected behaviour and a key reproduces the original;
those keys say "quirk" in their comment.
"""
from .config import CfgNode as CN

__all__ = ["add_mask_former_config"]


def _add_mask_classification_keys(node: CN, *, decoder_name: str, ce_loss: bool, class_weight: float,
                                  cost_class_weight: float, box_weight: float, giou_weight: float,
                                  dec_layers: int, single_matching: bool) -> None:
    """Keys common to every mask-classification model node."""
    # Name in TRANSFORMER_DECODER_REGISTRY.
    node.TRANSFORMER_DECODER_NAME = decoder_name

    # ---- classification mode ----------------------------------------------------------------
    # True: softmax cross-entropy over K+1 classes (the last = no-object), the class head has K+1
    # outputs ("CE mode", Mask2Former and SiMaskFormer's semantic configs). False: sigmoid focal
    # loss over K classes, no-object = all-zero target ("focal mode", SiMaskFormer instance).
    node.SEMANTIC_CE_LOSS = ce_loss
    # Weight of the no-object class in the CE loss.
    node.NO_OBJECT_WEIGHT = 0.1
    node.FOCAL_ALPHA = 0.25
    node.FOCAL_GAMMA = 2.0

    # ---- losses -------------------------------------------------------------------------------
    # Supervise every intermediate prediction set (aux outputs) with the same losses.
    node.DEEP_SUPERVISION = True
    node.CLASS_WEIGHT = class_weight
    node.MASK_WEIGHT = 5.0
    node.DICE_WEIGHT = 5.0
    # Weight of an auxiliary per-pixel loss in training: BCE + Dice of a 1x1 classifier on the
    # mask features against the per-class union of the ground-truth masks (0 = off). Gives the
    # pixel decoder a dense signal from the first step; inference is unchanged.
    node.PIXEL_AUX_WEIGHT = 0.0
    # Box L1 / GIoU losses; used only when the decoder predicts boxes ("pred_boxes").
    node.BOX_LOSS = True
    node.BOX_WEIGHT = box_weight
    node.GIOU_WEIGHT = giou_weight
    # Points sampled per mask for the mask losses and the matching cost (112^2).
    node.TRAIN_NUM_POINTS = 112 * 112
    # PointRend importance sampling of the mask loss points.
    node.OVERSAMPLE_RATIO = 3.0
    node.IMPORTANCE_SAMPLE_RATIO = 0.75
    # Where the mask losses and the matching cost are evaluated: "points" (TRAIN_NUM_POINTS points,
    # PointRend importance sampling) or "grid" (every cell of the stride-4 predicted mask, the
    # ground truth bilinearly resized to it). "grid" suits small inputs: at 256 px the 64x64 grid
    # has 4,096 cells, fewer than the points would be, and no sampling is computed.
    node.MASK_LOSS_SAMPLING = "points"

    # ---- Hungarian matching -------------------------------------------------------------------
    node.COST_CLASS_WEIGHT = cost_class_weight
    node.COST_MASK_WEIGHT = 5.0
    node.COST_DICE_WEIGHT = 5.0
    node.COST_BOX_WEIGHT = box_weight
    node.COST_GIOU_WEIGHT = giou_weight
    # Class cost in CE mode: "softmax" (-p(class), corrected) or "focal" (sigmoid focal cost on the
    # softmax-trained logits: original-implementation difference D6). Focal mode always uses "focal".
    node.CLASS_COST_TYPE = "softmax"
    # SML: one Hungarian assignment per image on the cost summed over all prediction sets (final
    # + aux), reused by every layer. False = match every prediction set on its own (Mask2Former).
    node.SML = single_matching

    # ---- transformer decoder ------------------------------------------------------------------
    node.HIDDEN_DIM = 256
    node.NUM_OBJECT_QUERIES = 100
    node.NHEADS = 8
    node.DROPOUT = 0.0
    node.DIM_FEEDFORWARD = 2048
    # Mask2Former: number of prediction sets incl. the initial one (DEC_LAYERS - 1 transformer
    # layers). SiMaskFormer: number of decoder layers (plus the initial prediction).
    node.DEC_LAYERS = dec_layers
    node.PRE_NORM = False
    # Always project the pixel-decoder features with a 1x1 conv, even when widths match.
    node.ENFORCE_INPUT_PROJ = False
    # The padded network input is a multiple of this (ImageList padding).
    node.SIZE_DIVISIBILITY = 32

    # ---- inference ----------------------------------------------------------------------------
    node.TEST = CN()
    # Emit "sem_seg" (K×H×W scores, sum over queries of p(class)·sigmoid(mask)).
    node.TEST.SEMANTIC_ON = True
    # Emit "sem_seg" for multi-label data: per class the max over queries of p(class)·sigmoid(mask);
    # each class is thresholded on its own. Replaces the semantic map when both are on.
    node.TEST.MULTILABEL_ON = False
    # Emit "instances" (top-k over queries × classes).
    node.TEST.INSTANCE_ON = False
    # Kept for command-line compatibility with the original implementation; only panoptic inference used them.
    node.TEST.OBJECT_MASK_THRESHOLD = 0.8
    node.TEST.OVERLAP_THRESHOLD = 0.8
    # Resize the mask logits to the original size before combining them (slower, more memory).
    node.TEST.SEM_SEG_POSTPROCESSING_BEFORE_INFERENCE = False
    # Instance scores ignore the mask score (the original implementation's TEST_FOUCUS_ON_BOX).
    node.TEST.FOCUS_ON_BOX = False


def add_mask_former_config(cfg: CN) -> None:
    """Add ``MODEL.MASK_FORMER``, ``MODEL.SIMASKFORMER`` and the pixel-decoder keys of
    ``MODEL.SEM_SEG_HEAD`` to ``cfg`` (in place)."""
    # ---------------------------------------------------------------------------------------
    # Pixel decoder (MODEL.SEM_SEG_HEAD)
    # ---------------------------------------------------------------------------------------
    head = cfg.MODEL.SEM_SEG_HEAD
    # Name in PIXEL_DECODER_REGISTRY: "MSDeformAttnPixelDecoder" or "BasePixelDecoder" (light FPN).
    head.PIXEL_DECODER_NAME = "MSDeformAttnPixelDecoder"
    # Channels of mask_features (= the decoder's mask-embedding width).
    head.MASK_DIM = 256
    # Backbone features refined by the deformable encoder (strides 8–32).
    head.DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES = ["res3", "res4", "res5"]
    head.DEFORMABLE_TRANSFORMER_ENCODER_N_POINTS = 4
    # Encoder heads (the original implementation reads its meta-arch NHEADS here; both are 8 in every config).
    head.DEFORMABLE_TRANSFORMER_ENCODER_N_HEADS = 8
    head.TRANSFORMER_ENC_LAYERS = 6
    head.DIM_FEEDFORWARD = 1024
    # Dropout of the encoder layers (the original implementation reads its meta-arch DROPOUT: 0.0 in every yaml).
    head.TRANSFORMER_DROPOUT = 0.0
    # Multi-scale features handed to the transformer decoder (low resolution first).
    head.NUM_FEATURE_LEVELS = 3
    # Levels inside the encoder: the encoder inputs plus (TOTAL - #inputs) extra levels made by
    # stride-2 3×3 convs on the coarsest input (MaskDINO); 3 = none (all original-implementation configs).
    head.TOTAL_NUM_FEATURE_LEVELS = 3
    # How the FPN merges a lateral map with the upsampled coarser map: "SUM" (Mask2Former /
    # MaskDINO) or "CONCAT" (SiMaskFormer: concat → 3×3 conv + GN + ReLU).
    head.FPN_FUSION = "SUM"

    # ---------------------------------------------------------------------------------------
    # Mask2Former (MODEL.MASK_FORMER)
    # ---------------------------------------------------------------------------------------
    cfg.MODEL.MASK_FORMER = CN()
    _add_mask_classification_keys(
        cfg.MODEL.MASK_FORMER,
        decoder_name="MultiScaleMaskedTransformerDecoder",
        ce_loss=True,
        class_weight=2.0,
        cost_class_weight=2.0,
        box_weight=0.0,
        giou_weight=0.0,
        dec_layers=10,
        single_matching=False,
    )

    # ---------------------------------------------------------------------------------------
    # SiMaskFormer (MODEL.SIMASKFORMER)
    # ---------------------------------------------------------------------------------------
    cfg.MODEL.SIMASKFORMER = CN()
    sim = cfg.MODEL.SIMASKFORMER
    _add_mask_classification_keys(
        sim,
        decoder_name="SiMaskFormerDecoder",
        ce_loss=False,
        class_weight=4.0,
        cost_class_weight=4.0,
        box_weight=5.0,
        giou_weight=2.0,
        dec_layers=9,
        single_matching=True,
    )
    # Deformable cross-attention sampling points per head and level.
    sim.DEC_N_POINTS = 8
    # Two-stage query selection from the encoder tokens ("interm" predictions and losses);
    # False = learned content queries and boxes.
    sim.TWO_STAGE = True
    # Emit the prediction of the initial queries (before the first layer) as aux output 0.
    sim.INITIAL_PRED = True
    # UOME ablation switch: rank the encoder tokens by the learned matching-cost head (True,
    # SiMaskFormer; adds "pred_proposal_cost" and the proposal loss) or by their max class logit
    # (False, MaskDINO).
    sim.UOME = True
    # AMR ablation switch (Adaptive Mask Refinement): mask-driven positional query, mask-guided
    # cross-attention sampling and iterative mask refinement. False = DINO-style box-driven layers
    # that predict each mask directly (see the SiMaskFormerDecoder docstring).
    sim.AMR = True
    # Side of the two-stage proposal box at the finest level (doubles per level); MaskDINO 0.05.
    sim.PROPOSAL_BOX_SCALE = 0.1
    # Weight of the UOME proposal-cost L1 loss.
    sim.PROPOSAL_WEIGHT = 5.0
    # UOME targets of images without ground truth: "exclude" them from the loss (corrected) or
    # "original": fill 25 → min–max gives all-zero targets ("perfect match", original-implementation
    # difference D7).
    sim.PROPOSAL_EMPTY_GT = "exclude"
    # Initial query boxes: "bitmask" (tight box of the initial mask), "mask2box", "no" (predicted).
    sim.INITIALIZE_BOX_TYPE = "bitmask"
    # Denoising: "seg" (mask + label noise), "standard" (label + box noise, no mask DN loss), "no".
    sim.DN = "seg"
    sim.DN_NOISE_SCALE = 0.4
    # Denoising queries budget: groups = DN_NUM // max #GT per image.
    sim.DN_NUM = 100
    # AMR: where the deformable cross-attention samples: "mask" (inside the box of the current
    # mask, gated by it), "bbox" (inside the predicted box), "both".
    sim.TYPE_SAMPLING_LOCATIONS = "mask"
    # AMR: positional query from the mask: "SumSinusoidalMask" (boundary-band sine embedding) or
    # "MaskSimpleCNN" (small CNN on the mask probabilities).
    sim.TYPE_MASK_EMBED = "SumSinusoidalMask"
    # Reproduce the original implementation's decoder quirks (docs/simaskformer.md: D1 emitted mask
    # R + 2Δ, D3 gate multiplies logits by 0/1, D4/D21 empty-mask boxes, D8 DN mask-noise units, D22
    # invalid tokens selectable, D23 column-first sine table). False = corrected behaviour. Resolved
    # into named module arguments by the decoder's from_config (original_implementation_items). The
    # other quirks have their own keys, which the *_original configs set: INPUT.ROTATION.ONCE_PER_RUN
    # (D2), CLASS_COST_TYPE "focal" (D6) and PROPOSAL_EMPTY_GT "original" (D7).
    sim.ORIGINAL_QUIRKS = False
    sim.TEST.SEMANTIC_ON = True
