"""Every config under configs/ loads (get_cfg + merge_from_file, _BASE_ chains included) and builds
its model on CPU; the original recipes keep their defining settings."""
import glob
import os

import pytest
import torch

from skinformer.config import get_cfg
from skinformer.modeling import build_model

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CONFIGS = sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "configs", "**", "*.yaml"),
                                                            recursive=True))


def _load(rel):
    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(ROOT, rel))
    cfg.MODEL.DEVICE = "cpu"
    return cfg


def test_configs_found():
    assert len(CONFIGS) > 20 and any(p.startswith(os.path.join("configs", "original_recipes")) for p in CONFIGS)


@pytest.mark.parametrize("rel", CONFIGS)
def test_config_loads_and_builds(rel):
    cfg = _load(rel)
    with torch.no_grad():
        model = build_model(cfg)
    assert sum(p.numel() for p in model.parameters()) > 0


def test_original_recipes_keep_their_settings():
    seg = _load("configs/original_recipes/segformer_mitb5_hemo.yaml")
    assert seg.MODEL.BACKBONE.NAME == "MiTBackbone" and seg.MODEL.MIT.VARIANT == "b5"
    assert list(seg.MODEL.LOSS.NAMES) == ["dice", "sigmoid_focal"] and seg.DATASETS.TRAIN == ("skin_hemo_train",)
    t2 = [_load(f"configs/original_recipes/{n}_isic2018_task2.yaml")
          for n in ("technion_unet", "technion_unet_attention", "technion_unet_convnext_attention", "inception_unet_aspp")]
    assert all(c.DATASETS.TRAIN == ("isic2018_task2_train",) and c.MODEL.SEM_SEG_HEAD.NUM_CLASSES == 5 for c in t2)
    assert [c.MODEL.BACKBONE.NAME for c in t2] == ["UNetEncoder", "UNetEncoder", "TimmBackbone", "TimmBackbone"]
    assert t2[1].MODEL.SEM_SEG_HEAD.UNET_ATTENTION_GATES and t2[1].MODEL.UNET_ENCODER.RESIDUAL
    assert t2[3].MODEL.SEM_SEG_HEAD.UNET_DILATED_BRANCHES.DILATIONS == [2, 3, 4]
    dl = _load("configs/original_recipes/deeplabv3plus_R50_isic2017_augmented.yaml")
    assert dl.SOLVER.LR_SCHEDULER_NAME == "ReduceLROnPlateau" and dl.SOLVER.EARLY_STOPPING.PATIENCE == 10
    assert dl.MODEL.SEM_SEG_HEAD.LOSS_TYPE == "bce+dice"
