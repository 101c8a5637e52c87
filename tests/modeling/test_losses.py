"""LOSS_REGISTRY: known answers for every entry, both target forms (label maps and per-class
masks), class weights (fixed and inverse frequency), composition from the config, and a few
training iterations of a per-pixel model on the synthetic lesion data."""
import logging
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import sigmoid_focal_loss

from skinformer.config import get_cfg
from skinformer.modeling.losses import (
    LOSS_REGISTRY, BCEDiceLoss, CrossEntropyLoss, DiceLoss, FocalDiceLoss, FocalLoss, JaccardLoss, SigmoidFocalLoss,
    TverskyLoss, WeightedCEFocalLoss, BCELoss, build_loss, inverse_frequency_weights, resolve_class_weights,
)

ALL_SHORT = ["ce", "bce", "focal", "sigmoid_focal", "weighted_ce_focal", "dice", "jaccard", "tversky", "bce_dice",
             "focal_dice"]


def _rand(k=2, b=2, h=8, w=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, k + 1, h, w, generator=g)
    target = torch.randint(0, k + 1, (b, h, w), generator=g)
    return logits, target


def test_every_short_name_is_registered():
    names = {getattr(obj, "short_name", None) for _, obj in LOSS_REGISTRY}
    assert set(ALL_SHORT) <= names


# ---------------------------------------------------------------- distribution losses
def test_ce_weighted_known_answer():
    logits, target = _rand()
    target[0, 0, :3] = 255
    w = [0.2, 0.5, 0.3]
    got = CrossEntropyLoss(class_weights=w)(logits, target)
    valid = target != 255
    t = torch.where(valid, target, torch.zeros_like(target))
    nll = -F.log_softmax(logits, 1).gather(1, t[:, None])[:, 0]
    expected = (torch.tensor(w)[t] * nll)[valid].mean()
    torch.testing.assert_close(got, expected)
    # "weighted_mean" == torch's weighted CE
    torch.testing.assert_close(CrossEntropyLoss(class_weights=w, reduction="weighted_mean")(logits, target),
                               F.cross_entropy(logits, target, weight=torch.tensor(w), ignore_index=255))
    # unweighted == torch's mean CE with ignore_index
    torch.testing.assert_close(CrossEntropyLoss()(logits, target), F.cross_entropy(logits, target, ignore_index=255))


def test_focal_known_answers():
    # two equal logits: p_t = 0.5 -> -(0.5)^2 log 0.5
    logits = torch.zeros(1, 2, 1, 1)
    target = torch.zeros(1, 1, 1, dtype=torch.long)
    torch.testing.assert_close(FocalLoss(gamma=2.0)(logits, target), torch.tensor(0.25 * math.log(2)))
    logits, target = _rand()
    # gamma 0 is CE
    torch.testing.assert_close(FocalLoss(gamma=0.0)(logits, target), CrossEntropyLoss()(logits, target))
    # sigmoid focal on a label map: torchvision's on the K class logits vs their one-hot
    got = SigmoidFocalLoss(gamma=2.0, alpha=0.25)(logits, target)
    onehot = F.one_hot(target, 3).permute(0, 3, 1, 2)[:, :2].float()
    torch.testing.assert_close(got, sigmoid_focal_loss(logits[:, :2], onehot, 0.25, 2.0, reduction="mean"))


def test_weighted_ce_focal_known_answer():
    logits, target = _rand()
    w = torch.tensor([0.1, 2.0, 0.7])
    got = WeightedCEFocalLoss(gamma=2.0, class_weights=w.tolist())(logits, target)
    wce = F.cross_entropy(logits, target, weight=w, reduction="none")  # w_y * CE, per pixel
    expected = ((1 - torch.exp(-wce)) ** 2 * wce).mean()
    torch.testing.assert_close(got, expected)


def test_bce_multilabel_masks_and_weights():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 3, 6, 6, generator=g)
    masks = torch.rand(2, 3, 6, 6, generator=g) > 0.5  # overlapping attributes
    w = [1.0, 2.0, 3.0]
    got = BCELoss(class_weights=w)(logits, masks)
    expected = (F.binary_cross_entropy_with_logits(logits, masks.float(), reduction="none")
                * torch.tensor(w).view(1, 3, 1, 1)).mean()
    torch.testing.assert_close(got, expected)
    # logits with an extra "no class" channel: it is not scored
    extra = torch.cat([logits, torch.randn(2, 1, 6, 6)], 1)
    torch.testing.assert_close(BCELoss(class_weights=w)(extra, masks), expected)
    # "ce" on per-class masks is the same weighted per-class BCE
    torch.testing.assert_close(CrossEntropyLoss(class_weights=w)(logits, masks), expected)


# ---------------------------------------------------------------- region losses
def test_dice_jaccard_tversky_known_answers():
    # sigmoid(0) = 0.5 everywhere; 4 of 16 pixels positive: I = 2, P = 8, G = 4
    logits = torch.zeros(1, 1, 4, 4)
    mask = torch.zeros(1, 1, 4, 4)
    mask[0, 0, 0] = 1
    kw = {"activation": "sigmoid", "smooth": 1.0}
    torch.testing.assert_close(DiceLoss(**kw)(logits, mask), torch.tensor(1 - 5 / 13))
    torch.testing.assert_close(JaccardLoss(**kw)(logits, mask), torch.tensor(1 - 3 / 11))
    # Tversky: FP = 6, FN = 2 -> (2 + 1) / (2 + 0.3*6 + 0.7*2 + 1)
    torch.testing.assert_close(TverskyLoss(alpha=0.3, beta=0.7, **kw)(logits, mask), torch.tensor(1 - 3 / 6.2))
    logits, target = _rand(seed=5)
    # Tversky(1, 1) is Jaccard; Tversky(.5, .5) is Dice without smoothing
    torch.testing.assert_close(TverskyLoss(alpha=1, beta=1)(logits, target), JaccardLoss()(logits, target))
    torch.testing.assert_close(TverskyLoss(alpha=0.5, beta=0.5, smooth=0)(logits, target),
                               DiceLoss(smooth=0)(logits, target))


def test_dice_softmax_scores_classes_not_no_class():
    # perfect prediction of class 0 / "no class": Dice of class 0 is 1 -> loss 0
    target = torch.tensor([[[0, 0, 1, 1]]])
    logits = torch.stack([(target == 0).float(), (target == 1).float()], 1) * 100.0
    assert DiceLoss(smooth=0.0)(logits, target).item() < 1e-6


def test_dice_pooled_vs_per_image_and_class_weighting():
    # image 0: class present and predicted perfectly, image 1: class absent but predicted everywhere
    logits = torch.full((2, 1, 2, 2), 100.0)
    mask = torch.zeros(2, 1, 2, 2)
    mask[0] = 1
    pooled = DiceLoss(activation="sigmoid", smooth=0.0)(logits, mask)
    torch.testing.assert_close(pooled, torch.tensor(1 - 8 / 12))  # 2I = 8, P + G = 8 + 4
    per_image = DiceLoss(activation="sigmoid", smooth=0.0, reduction="per_image")(logits, mask)
    torch.testing.assert_close(per_image, torch.tensor(0.5))  # (0 + 1) / 2
    # two attributes with losses l0, l1; weighted sum (class_reduction "sum") and weighted mean
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 2, 5, 5, generator=g)
    masks = torch.rand(2, 2, 5, 5, generator=g) > 0.6
    l0 = DiceLoss(activation="sigmoid")(logits[:, :1], masks[:, :1])
    l1 = DiceLoss(activation="sigmoid")(logits[:, 1:], masks[:, 1:])
    got_sum = DiceLoss(activation="sigmoid", class_weights=[1.0, 3.0], class_reduction="sum")(logits, masks)
    torch.testing.assert_close(got_sum, l0 + 3 * l1)
    got_mean = DiceLoss(activation="sigmoid", class_weights=[1.0, 3.0])(logits, masks)
    torch.testing.assert_close(got_mean, (l0 + 3 * l1) / 4)


def test_per_image_without_smoothing_never_nan():
    logits, target = _rand(k=1, seed=9)
    target[1] = 255  # the second image has no valid pixel
    loss = DiceLoss(smooth=0.0, reduction="per_image")
    got = loss(logits, target)
    assert torch.isfinite(got)
    torch.testing.assert_close(got, loss(logits[:1], target[:1]))


def test_label_map_sigmoid_equals_onehot_masks():
    logits, target = _rand(k=3, seed=2)
    masks = F.one_hot(target, 4).permute(0, 3, 1, 2)[:, :3].bool()
    for cls in (DiceLoss, JaccardLoss, TverskyLoss, CrossEntropyLoss, FocalLoss, WeightedCEFocalLoss):
        a = cls(activation="sigmoid")(logits, target)
        b = cls(activation="sigmoid")(logits, masks)
        torch.testing.assert_close(a, b, msg=cls.__name__)


def test_combined_entries():
    logits, target = _rand(k=1, seed=4)
    bd = BCEDiceLoss(bce=BCELoss(), dice=DiceLoss(activation="sigmoid"))
    torch.testing.assert_close(bd(logits, target), BCELoss()(logits, target) + DiceLoss(activation="sigmoid")(logits, target))
    fd = FocalDiceLoss(focal=SigmoidFocalLoss(alpha=0.25), dice=DiceLoss())
    torch.testing.assert_close(fd(logits, target), SigmoidFocalLoss(alpha=0.25)(logits, target) + DiceLoss()(logits, target))


@pytest.mark.parametrize("name", ALL_SHORT)
def test_ignore_and_valid_excluded_and_all_ignored_is_zero(name):
    cfg = get_cfg()
    cfg.MODEL.LOSS.NAMES = [name]
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = 2
    loss = build_loss(cfg)
    logits, target = _rand(seed=7)
    logits.requires_grad_(True)
    target[:, :4] = 255
    total = sum(loss(logits, target).values())
    total.backward()
    assert logits.grad[:, :, :4].abs().max() == 0 and logits.grad[:, :, 4:].abs().max() > 0
    # masks + valid: same exclusion
    masks = F.one_hot(target.clamp(max=2), 3).permute(0, 3, 1, 2)[:, :2].float()
    lg = logits.detach().clone().requires_grad_(True)
    sum(loss(lg, masks, valid=target != 255).values()).backward()
    assert lg.grad[:, :, :4].abs().max() == 0
    target[:] = 255
    out = sum(loss(logits, target).values())
    assert out.item() == 0.0 and torch.isfinite(out)


# ---------------------------------------------------------------- config, class weights
def test_config_composition_names_weights_activation():
    cfg = get_cfg()
    cfg.MODEL.LOSS.NAMES = ["weighted_ce_focal", "DiceLoss"]
    cfg.MODEL.LOSS.WEIGHTS = [1.0, 0.5]
    cfg.MODEL.SEM_SEG_HEAD.LOSS_WEIGHT = 2.0
    loss = build_loss(cfg)
    assert loss.activation == "softmax" and loss.weights == {"weighted_ce_focal": 2.0, "dice": 1.0}
    logits, target = _rand(k=1)
    out = loss(logits, target)
    torch.testing.assert_close(out["loss_dice"], DiceLoss()(logits, target))
    cfg.MODEL.LOSS.NAMES = ["bce", "dice"]
    cfg.MODEL.LOSS.WEIGHTS = []
    assert build_loss(cfg).activation == "sigmoid"  # BCE: label maps scored with sigmoids
    cfg.MODEL.LOSS.NAMES = ["hinge"]
    with pytest.raises(KeyError, match="hinge"):
        build_loss(cfg)
    cfg.MODEL.LOSS.NAMES = ["ce", "dice"]
    cfg.MODEL.LOSS.WEIGHTS = [1.0]
    with pytest.raises(ValueError, match="MODEL.LOSS.WEIGHTS"):
        build_loss(cfg)


def test_bad_class_weights_length_names_key():
    loss = CrossEntropyLoss(class_weights=[1.0, 2.0, 3.0, 4.0, 5.0])
    logits, target = _rand()
    with pytest.raises(ValueError, match="MODEL.LOSS.CLASS_WEIGHTS"):
        loss(logits, target)
    cfg = get_cfg()
    cfg.MODEL.LOSS.CLASS_WEIGHTS = "median_frequency"
    with pytest.raises(ValueError, match="inverse_frequency"):
        resolve_class_weights(cfg)


def test_inverse_frequency_known_answers():
    np.testing.assert_allclose(inverse_frequency_weights([1, 3], "sum"), [0.75, 0.25])
    np.testing.assert_allclose(inverse_frequency_weights([1, 3], "min"), [3.0, 1.0])
    np.testing.assert_allclose(inverse_frequency_weights([1, 3, 0], "mean"), [1.5, 0.5, 0.0])
    # the multi-label recipe: inverse frequencies divided by the smallest
    np.testing.assert_allclose(inverse_frequency_weights([0.492, 0.061, 0.032, 0.22, 0.195], "min"),
                               [1, 8.066, 15.375, 2.236, 2.523], rtol=1e-3)


def test_inverse_frequency_from_synthetic_training_set(tiny_synthetic_cfg, caplog):
    cfg = tiny_synthetic_cfg
    cfg.MODEL.LOSS.CLASS_WEIGHTS = "inverse_frequency"
    with caplog.at_level(logging.INFO, logger="skinformer"):
        w = resolve_class_weights(cfg)
    assert len(w) == 2 and abs(sum(w) - 1) < 1e-6
    assert w[0] > w[1]  # the lesion is rarer than the background
    assert "Inverse-frequency class weights" in caplog.text


def test_train_few_iterations_on_synthetic(tiny_synthetic_cfg, tmp_path):
    """Seed combinations end to end: weighted CE x focal + Dice with inverse-frequency weights;
    SegFormer's sigmoid focal + softmax Dice; Tversky per image."""
    from skinformer.engine import DefaultTrainer

    combos = [
        {"MODEL.LOSS.NAMES": ["weighted_ce_focal", "dice"], "MODEL.LOSS.CLASS_WEIGHTS": "inverse_frequency"},
        {"MODEL.LOSS.NAMES": ["focal_dice"]},
        {"MODEL.LOSS.NAMES": ["tversky", "bce_dice"], "MODEL.LOSS.REGION_REDUCTION": "per_image"},
    ]
    for i, combo in enumerate(combos):
        cfg = tiny_synthetic_cfg.clone()
        cfg.merge_from_list(["SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", "3", "SOLVER.CHECKPOINT_PERIOD", "100"])
        cfg.OUTPUT_DIR = str(tmp_path / f"out{i}")
        for k, v in combo.items():
            node = cfg
            *parents, leaf = k.split(".")
            for p in parents:
                node = node[p]
            node[leaf] = v
        trainer = DefaultTrainer(cfg)
        trainer.train()
        hist = trainer.storage.history
        for name in combo["MODEL.LOSS.NAMES"]:
            key = f"loss_{name}"
            assert key in trainer.storage._history, (key, sorted(trainer.storage._history))
            assert np.isfinite(hist(key).latest())
