"""Per-pixel models on multi-label (ISIC 2018 Task 2-style) data: naming the dataset is enough —
one sigmoid per attribute, per-attribute losses, per-attribute masks scored by ``isic_task2``."""
import os

import numpy as np
import pytest
import torch
from PIL import Image

from skinformer.config import get_cfg
from skinformer.data.catalog import reset_lazy_resolution
from skinformer.data.datasets import isic
from skinformer.data.datasets.builtin import BUILTIN_FAMILIES
from skinformer.engine.defaults import DefaultTrainer
from skinformer.modeling import build_model

ATTRS = isic.ISIC2018_TASK2_ATTRIBUTES


def write_task2_fixture(root, splits=(("ISIC2018_Task1-2_Training_Input", "ISIC2018_Task2_Training_GroundTruth_v3", 4),
                                      ("ISIC2018_Task1-2_Validation_Input", "ISIC2018_Task2_Validation_GroundTruth", 2)),
                        size=(40, 48)):
    """Tiny official-layout ISIC 2018 Task 2 tree: attribute 0 (globules) and 3 (pigment network)
    overlap; the image shows both (red channel = globules, green = pigment network)."""
    base = os.path.join(root, "isic2018")
    rng = np.random.default_rng(0)
    n = 0
    for img_dir, gt_dir, count in splits:
        os.makedirs(os.path.join(base, img_dir), exist_ok=True)
        os.makedirs(os.path.join(base, gt_dir), exist_ok=True)
        for _ in range(count):
            iid = f"ISIC_{n:07d}"
            n += 1
            h, w = size
            masks = np.zeros((5, h, w), bool)
            y, x = rng.integers(2, h // 2), rng.integers(2, w // 2)
            masks[0, y:y + h // 3, x:x + w // 3] = True
            masks[3, y + 4:y + h // 2, x + 4:x + w // 2] = True
            img = np.full((h, w, 3), 90, np.uint8)
            img[..., 0][masks[0]] = 230
            img[..., 1][masks[3]] = 230
            Image.fromarray(img).save(os.path.join(base, img_dir, iid + ".jpg"), quality=98)
            for k, a in enumerate(ATTRS):
                Image.fromarray(masks[k].astype(np.uint8) * 255).save(
                    os.path.join(base, gt_dir, f"{iid}_attribute_{a}.png"))
    return base


@pytest.fixture
def task2_root(tmp_path, monkeypatch):
    write_task2_fixture(tmp_path)
    monkeypatch.setenv("SKINFORMER_DATASETS", str(tmp_path))
    names = BUILTIN_FAMILIES["isic"][1]()
    reset_lazy_resolution(names)
    yield tmp_path
    reset_lazy_resolution(names)


def _cfg(tmp_path, head="UNetHead", loss="ce+dice"):
    cfg = get_cfg()
    cfg.MODEL.META_ARCHITECTURE = "PerPixelSegmentor"
    cfg.MODEL.TIMM.NAME = "resnet10t"
    cfg.MODEL.SEM_SEG_HEAD.NAME = head
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = 5
    cfg.MODEL.SEM_SEG_HEAD.CONVS_DIM = 16
    cfg.MODEL.SEM_SEG_HEAD.ASPP_CHANNELS = 16
    cfg.MODEL.SEM_SEG_HEAD.UNET_DECODER_CHANNELS = [32, 16, 16, 8, 8]
    cfg.MODEL.SEM_SEG_HEAD.LOSS_TYPE = loss
    if head == "DeepLabV3PlusHead":
        cfg.MODEL.SEM_SEG_HEAD.IN_FEATURES = ["res2", "res5"]
    cfg.DATASETS.TRAIN = ("isic2018_task2_train",)
    cfg.DATASETS.TEST = ("isic2018_task2_val",)
    cfg.DATASETS.VALIDATE_FIRST_N = 1
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.INPUT.MIN_SIZE_TRAIN = (40,)
    cfg.INPUT.CROP.SIZE = (32, 32)
    cfg.INPUT.MIN_SIZE_TEST = 40
    cfg.SOLVER.IMS_PER_BATCH = 2
    cfg.SOLVER.MAX_ITER = 2
    cfg.SOLVER.CHECKPOINT_PERIOD = 100
    cfg.SOLVER.WARMUP_ITERS = 0
    cfg.TEST.NUM_VIS = 0
    cfg.SEED = 0
    cfg.OUTPUT_DIR = str(tmp_path / "out")
    return cfg


@pytest.mark.parametrize("head", ["UNetHead", "DeepLabV3PlusHead", "SegFormerHead", "FPNHead"])
def test_train_and_evaluate_by_naming_the_dataset(task2_root, head):
    """The issue's repro: any per-pixel head on isic2018_task2_* failed at iteration 0."""
    cfg = _cfg(task2_root, head)
    trainer = DefaultTrainer(cfg)
    assert trainer.model.multi_label and trainer.model.sigmoid
    trainer.train()
    assert trainer.iter == cfg.SOLVER.MAX_ITER
    results = DefaultTrainer.test(cfg, trainer.model)
    task2 = results["isic_task2"]  # one test dataset: the inner dict
    assert {"jaccard_micro", "dice_micro"} <= set(task2)
    assert all(f"jaccard-{a}" in task2 for a in ATTRS)


@pytest.mark.parametrize("loss,names", [("ce+dice", {"loss_ce", "loss_dice"}), ("bce", {"loss_bce"}),
                                        ("focal+dice", {"loss_focal", "loss_dice"}), ("focal", {"loss_focal"})])
def test_losses_are_per_attribute_sigmoids(task2_root, loss, names):
    torch.manual_seed(0)
    model = build_model(_cfg(task2_root, loss=loss)).train()
    lm = torch.zeros(5, 64, 64, dtype=torch.bool)
    lm[0, 4:40, 4:40] = True
    lm[3, 20:60, 20:60] = True  # overlaps attribute 0
    batch = [{"image": torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8), "label_masks": lm,
              "height": 64, "width": 64}]
    losses = model(batch)
    assert set(losses) == names and all(torch.isfinite(v) for v in losses.values())
    # The loss reads the overlapping masks: a different target gives a different loss.
    batch2 = [dict(batch[0], label_masks=~lm)]
    losses2 = model(batch2)
    assert all(not torch.isclose(losses[k], losses2[k]) for k in names)
    model.eval()
    with torch.no_grad():
        out = model([dict(batch[0], height=50, width=60)])[0]["sem_seg"]
    assert out.shape == (5, 50, 60)
    # independent sigmoids: per-class scores do not sum to <= 1 like a softmax would force
    assert out.min() >= 0 and out.max() <= 1 and (out.sum(0) > 1.5).all()


def test_multilabel_overfits_overlapping_attributes(task2_root):
    """A few dozen steps on one image: both overlapping attributes are predicted where they are."""
    torch.manual_seed(0)
    cfg = _cfg(task2_root, loss="bce+dice")
    cfg.MODEL.SEM_SEG_HEAD.NORM = "GN"
    cfg.MODEL.TIMM.FREEZE_BN = True  # train and eval compute the same function
    model = build_model(cfg).train()
    lm = torch.zeros(5, 64, 64, dtype=torch.bool)
    lm[0, 0:40, 0:40] = True
    lm[3, 24:64, 24:64] = True
    img = torch.full((3, 64, 64), 90, dtype=torch.uint8)
    img[0][lm[0]] = 230
    img[1][lm[3]] = 230
    batch = [{"image": img, "label_masks": lm, "height": 64, "width": 64}]
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(80):
        loss = sum(model(batch).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        pred = model(batch)[0]["sem_seg"] > 0.5
    both = lm[0] & lm[3]
    assert pred[0][both].float().mean() > 0.9 and pred[3][both].float().mean() > 0.9
    assert (pred == lm).float().mean() > 0.9


def test_single_label_datasets_stay_label_maps():
    cfg = get_cfg()
    cfg.MODEL.TIMM.NAME = "resnet10t"
    model = build_model(cfg)
    assert not model.multi_label
    cfg.DATASETS.TRAIN = ("synthetic_lesion_train", "isic2018_task2_train")
    with pytest.raises(ValueError, match="mix multi-label"):
        build_model(cfg)
