"""Loss registry for segmentation models: cross-entropy (class-weighted), focal, weighted CE ×
focal, BCE, soft Dice / Jaccard / Tversky and the BCE + Dice / focal + Dice pairs. Importing
this package registers every entry in :data:`LOSS_REGISTRY`."""
from .build import LOSS_REGISTRY, LEGACY_LOSS_TYPES, LossCombination, build_loss, get_loss_class, loss_activation, resolve_loss_terms
from . import pixel_losses, region_losses, combined  # noqa: F401  (registration)
from .class_weights import class_pixel_counts, inverse_frequency_weights, resolve_class_weights
from .pixel_losses import BCELoss, CrossEntropyLoss, FocalLoss, SigmoidFocalLoss, WeightedCEFocalLoss
from .region_losses import DiceLoss, JaccardLoss, TverskyLoss
from .combined import BCEDiceLoss, FocalDiceLoss
from .targets import prepare_targets
