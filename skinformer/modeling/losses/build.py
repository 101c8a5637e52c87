"""LOSS_REGISTRY and :func:`build_loss`: a weighted sum of registered losses from the config.

Call contract of every entry: ``loss(logits B×C×H×W, target, valid=None) -> scalar`` where
``target`` is an int64 label map ``B×H×W`` or float / bool per-class masks ``B×K×H×W`` (see
:mod:`.targets`). Entries are built as ``LOSS_REGISTRY.get(name)(cfg, activation=...,
class_weights=..., ignore_index=...)`` and may be named by class (``"DiceLoss"``) or by their
``short_name`` (``"dice"``).

``MODEL.LOSS.NAMES`` / ``MODEL.LOSS.WEIGHTS`` choose the terms; when ``NAMES`` is empty the
legacy ``MODEL.SEM_SEG_HEAD.LOSS_TYPE`` ("ce", "ce+dice", "focal", "focal+dice", "bce",
"bce+dice") selects them, with ``DICE_WEIGHT`` on the Dice term. Every term is multiplied by
``MODEL.SEM_SEG_HEAD.LOSS_WEIGHT``.
"""
import logging
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from skinformer.utils.registry import Registry

__all__ = ["LOSS_REGISTRY", "LossCombination", "build_loss", "resolve_loss_terms", "loss_activation",
           "LEGACY_LOSS_TYPES", "get_loss_class"]

LOSS_REGISTRY = Registry("LOSS")
LOSS_REGISTRY.__doc__ = """Per-pixel / per-mask losses; see :mod:`skinformer.modeling.losses.build`."""

logger = logging.getLogger(__name__)

# LOSS_TYPE -> [(registry short name, which weight)]: "main" = 1, "dice" = DICE_WEIGHT.
LEGACY_LOSS_TYPES: Dict[str, List[Tuple[str, str]]] = {
    "ce": [("ce", "main")],
    "ce+dice": [("ce", "main"), ("dice", "dice")],
    "focal": [("focal", "main")],
    "focal+dice": [("focal", "main"), ("dice", "dice")],
    "bce": [("bce", "main")],
    "bce+dice": [("bce", "main"), ("dice", "dice")],
}
# Terms that only make sense on sigmoids: with one of them, label maps are scored with sigmoids
# (unless MODEL.LOSS.ACTIVATION says otherwise) and per-pixel inference emits sigmoids.
_SIGMOID_TERMS = {"bce", "bce_dice"}


def get_loss_class(name: str):
    """Registered class for a class name or short name; clear error otherwise."""
    if name in LOSS_REGISTRY:
        return LOSS_REGISTRY.get(name)
    for _, obj in LOSS_REGISTRY:
        if getattr(obj, "short_name", None) == name:
            return obj
    valid = sorted(getattr(obj, "short_name", k) for k, obj in LOSS_REGISTRY)
    raise KeyError(f"Unknown loss '{name}' in MODEL.LOSS.NAMES; valid: {valid} (or their class names)")


def _short(name: str) -> str:
    return getattr(get_loss_class(name), "short_name", name)


def resolve_loss_terms(cfg) -> List[Tuple[str, float]]:
    """``[(short name, weight)]`` from ``MODEL.LOSS.NAMES/WEIGHTS`` or the legacy LOSS_TYPE."""
    head = cfg.MODEL.SEM_SEG_HEAD
    names = list(cfg.MODEL.LOSS.NAMES)
    if names:
        weights = list(cfg.MODEL.LOSS.WEIGHTS) or [1.0] * len(names)
        if len(weights) != len(names):
            raise ValueError(f"MODEL.LOSS.WEIGHTS {weights} must have one entry per MODEL.LOSS.NAMES {names}")
        terms = [(_short(n), float(w)) for n, w in zip(names, weights)]
    else:
        if head.LOSS_TYPE not in LEGACY_LOSS_TYPES:
            raise ValueError(f"MODEL.SEM_SEG_HEAD.LOSS_TYPE='{head.LOSS_TYPE}' is unknown; expected one of "
                             f"{sorted(LEGACY_LOSS_TYPES)} (or set MODEL.LOSS.NAMES)")
        which = {"main": 1.0, "dice": float(head.DICE_WEIGHT)}
        terms = [(n, which[k]) for n, k in LEGACY_LOSS_TYPES[head.LOSS_TYPE]]
    seen = set()
    for n, _ in terms:
        if n in seen:
            raise ValueError(f"Loss '{n}' appears twice in MODEL.LOSS.NAMES {names}")
        seen.add(n)
    return [(n, w * float(head.LOSS_WEIGHT)) for n, w in terms]


def loss_activation(cfg, terms: Optional[Sequence[Tuple[str, float]]] = None) -> str:
    """How label maps are scored: ``MODEL.LOSS.ACTIVATION``, or (empty) sigmoid when a
    sigmoid-only term (BCE) is used, else softmax."""
    act = str(cfg.MODEL.LOSS.ACTIVATION)
    if act:
        return act
    terms = resolve_loss_terms(cfg) if terms is None else terms
    return "sigmoid" if any(n in _SIGMOID_TERMS for n, _ in terms) else "softmax"


class LossCombination(nn.Module):
    """Weighted terms ``{"loss_<name>": weight × loss(logits, target, valid)}``.

    Attributes: ``activation`` ("softmax" | "sigmoid"): how label maps are scored, hence what
    a per-pixel model should emit at inference.
    """

    def __init__(self, terms: Dict[str, nn.Module], weights: Dict[str, float], activation: str):
        super().__init__()
        self.terms = nn.ModuleDict(terms)
        self.weights = dict(weights)
        self.activation = activation

    def forward(self, logits: torch.Tensor, target: torch.Tensor,
                valid: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        """``{"loss_<name>": weight × loss(logits, target, valid)}`` for every term."""
        return {f"loss_{name}": loss(logits, target, valid) * self.weights[name] for name, loss in self.terms.items()}

    def extra_repr(self) -> str:
        """Module summary: activation and term weights."""
        return f"activation={self.activation}, weights={self.weights}"


def build_loss(cfg, class_weights: Optional[Sequence[float]] = None) -> LossCombination:
    """Build the configured loss. ``class_weights`` overrides ``MODEL.LOSS.CLASS_WEIGHTS``
    (a list, or ``"inverse_frequency"`` computed from ``DATASETS.TRAIN``)."""
    from .class_weights import resolve_class_weights

    terms = resolve_loss_terms(cfg)
    activation = loss_activation(cfg, terms)
    if class_weights is None:
        class_weights = resolve_class_weights(cfg)
    modules, weights = {}, {}
    for name, w in terms:
        modules[name] = get_loss_class(name)(cfg, activation=activation, class_weights=class_weights,
                                             ignore_index=cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE)
        weights[name] = w
    loss = LossCombination(modules, weights, activation)
    logger.info("Loss: %s (label maps scored with %s)%s", " + ".join(f"{w:g} x {n}" for n, w in terms),
                activation, f"; class weights {[round(float(x), 5) for x in class_weights]}" if class_weights else "")
    return loss
