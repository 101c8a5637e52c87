import os
import re

import pytest
import torch

from mask_former_toy import ellipse_mask, make_input, tiny_cfg
from skinformer.modeling import build_model
from skinformer.modeling.sliding_window import SlidingWindow
from skinformer.structures import Instances

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OWN_FILES = [
    "skinformer/config/mask_former.py",
    "skinformer/layers/position_encoding.py",
    "skinformer/layers/mlp.py",
    "skinformer/layers/weight_init.py",
    "skinformer/modeling/pixel_decoder/__init__.py",
    "skinformer/modeling/pixel_decoder/msdeformattn.py",
    "skinformer/modeling/pixel_decoder/fpn.py",
    "skinformer/modeling/transformer_decoder/__init__.py",
    "skinformer/modeling/transformer_decoder/mask2former_decoder.py",
    "skinformer/modeling/transformer_decoder/utils.py",
    "skinformer/modeling/matcher.py",
    "skinformer/modeling/criterion.py",
    "skinformer/modeling/point_sample.py",
    "skinformer/modeling/mask_losses.py",
    "skinformer/modeling/meta_arch/mask_former.py",
]


def _model(*args, **kw):
    torch.manual_seed(0)
    return build_model(tiny_cfg(*args, **kw))


def test_no_hard_coded_cuda():
    for rel in OWN_FILES:
        with open(os.path.join(ROOT, rel)) as f:
            text = f.read()
        assert ".cuda" not in text and not re.search(r"device\s*=\s*['\"]cuda", text), rel


@pytest.mark.parametrize("arch", ["MaskFormer", "SiMaskFormer"])
def test_train_step_losses_are_weighted_and_complete(arch, caplog):
    model = _model(arch)
    model.train()
    batch = [make_input(seed=0), make_input(seed=1)]
    with caplog.at_level("INFO"):
        losses = model(batch)
    assert "has no weight" not in caplog.text  # every returned loss has a weight
    assert set(losses) <= set(model.criterion.weight_dict)
    if arch == "MaskFormer":
        assert len(losses) == 3 * 3  # final + 2 aux (DEC_LAYERS 3 counts the initial prediction)
    else:
        # 5 terms x (final + 3 aux + interm + dn + 3 dn-aux) + proposal
        assert len(losses) == 5 * 9 + 1
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    grads = [p.grad for p in model.pixel_decoder.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    if arch == "SiMaskFormer":
        head = model.transformer_decoder.proposal_head
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())


def test_simaskformer_loss_keys_stable_without_ground_truth():
    model = _model("SiMaskFormer")
    model.train()
    with_gt = model([make_input(seed=0), make_input(seed=1)])
    empty = make_input(seed=2, masks=torch.zeros(0, 64, 64), classes=[])
    without = model([empty, empty])
    assert set(with_gt) == set(without)
    assert all(torch.isfinite(v) for v in without.values())


def test_bad_class_id_is_named():
    model = _model("MaskFormer")
    model.train()
    bad = make_input(seed=0, masks=ellipse_mask(64, 64, 30, 30, 10, 10)[None], classes=[3])
    with pytest.raises(ValueError, match="toy_0.png.*NUM_CLASSES"):
        model([bad])


@pytest.mark.parametrize("arch", ["MaskFormer", "SiMaskFormer"])
def test_grid_mask_loss_sampling_from_the_config(arch):
    cfg = tiny_cfg(arch)
    node = "MASK_FORMER" if arch == "MaskFormer" else "SIMASKFORMER"
    cfg.MODEL[node].MASK_LOSS_SAMPLING = "grid"
    model = build_model(cfg)
    assert model.criterion.mask_sampling == "grid" and model.criterion.matcher.mask_sampling == "grid"
    model.train()
    losses = model([make_input(seed=0, masks=ellipse_mask(64, 64, 30, 30, 10, 10)[None], classes=[0])])
    assert all(torch.isfinite(v) for v in losses.values())
    cfg.MODEL[node].MASK_LOSS_SAMPLING = "dense"
    with pytest.raises(ValueError, match=f"MODEL.{node}.MASK_LOSS_SAMPLING.*'dense'"):
        build_model(cfg)


@pytest.mark.parametrize("arch", ["MaskFormer", "SiMaskFormer"])
def test_semantic_binary_inference(arch):
    model = _model(arch).eval()
    out = model([make_input(64, 96, orig=(100, 150))])
    sem = out[0]["sem_seg"]
    assert sem.shape == (1, 100, 150) and sem.min() >= 0 and sem.max() <= 1


def test_semantic_multiclass_and_postprocess_before_inference():
    cfg = tiny_cfg("MaskFormer", num_classes=3)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    inp = [make_input(64, 64, orig=(80, 70))]
    sem = model(inp)[0]["sem_seg"]
    assert sem.shape == (3, 80, 70) and sem.min() >= 0
    model.sem_seg_postprocess_before_inference = True
    sem2 = model(inp)[0]["sem_seg"]
    assert sem2.shape == (3, 80, 70)
    assert (sem - sem2).abs().mean() < 0.05  # same maps up to where sigmoid and resizing are swapped


class _FakePredict:
    """Replaces model.predict with fixed decoder outputs (Q=2, K=2) to check the post-processing."""

    def __init__(self, boxes=False):
        self.calls = 0
        self.boxes = boxes

    def __call__(self, images, targets=None):
        self.calls += 1
        b, _, h, w = images.shape
        masks = torch.full((b, 2, h // 4, w // 4), -10.0)
        masks[:, 0, :, : w // 8] = 10.0  # query 0: left half
        masks[:, 1, : h // 8] = 10.0     # query 1: top half
        logits = torch.log(torch.tensor([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1]]))[None].expand(b, -1, -1)
        out = {"pred_logits": logits, "pred_masks": masks}
        if self.boxes:
            out["pred_boxes"] = torch.tensor([[[0.25, 0.5, 0.5, 1.0], [0.5, 0.25, 1.0, 0.5]]]).expand(b, -1, -1)
        return out


def test_multilabel_inference_is_per_class_max():
    model = _model("MaskFormer", num_classes=2, multilabel=True).eval()
    model.predict = _FakePredict()
    sem = model([make_input(64, 64)])[0]["sem_seg"]
    # class 0: 0.6 on the left half (query 0), 0.2 elsewhere on the top (query 1)
    assert sem.shape == (2, 64, 64)
    assert sem[0, 48, 8].item() == pytest.approx(0.6, abs=1e-3)
    assert sem[0, 8, 48].item() == pytest.approx(0.2, abs=1e-3)
    assert sem[1, 8, 48].item() == pytest.approx(0.7, abs=1e-3)
    assert sem[1, 48, 48].item() == pytest.approx(0.0, abs=1e-3)
    # semantic (sum) instead: overlap region sums both queries
    model.multilabel_on = False
    sem = model([make_input(64, 64)])[0]["sem_seg"]
    assert sem[0, 8, 8].item() == pytest.approx(0.8, abs=1e-3)


@pytest.mark.parametrize("boxes", [False, True])
def test_instance_inference(boxes):
    model = _model("MaskFormer", num_classes=2, instance=True).eval()
    model.predict = _FakePredict(boxes=boxes)
    inst = model([make_input(64, 64, orig=(128, 128))])[0]["instances"]
    assert isinstance(inst, Instances) and inst.image_size == (128, 128)
    assert len(inst) == 4  # min(DETECTIONS_PER_IMAGE 5, Q*K 4)
    assert inst.pred_masks.dtype == torch.bool and inst.pred_masks.shape == (4, 128, 128)
    assert inst.scores.tolist() == sorted(inst.scores.tolist(), reverse=True)
    # best: query 1 / class 1 (0.7), mask score ~1
    assert inst.pred_classes[0].item() == 1 and inst.scores[0].item() == pytest.approx(0.7, abs=0.01)
    top = inst.pred_boxes.tensor[0]
    # top half of a 128x128 original: (0, 0, 128, 64) from the predicted box or from the mask
    torch.testing.assert_close(top, torch.tensor([0.0, 0.0, 128.0, 64.0]), atol=1.0, rtol=0)


def test_sliding_window_inference():
    model = _model("MaskFormer", num_classes=2, multilabel=True).eval()
    fake = _FakePredict()
    model.predict = fake
    model.sliding_window = SlidingWindow(64, 32, blend="mean", batch_size=1)
    sem = model([make_input(96, 128, orig=(96, 128))])[0]["sem_seg"]
    assert sem.shape == (2, 96, 128)
    assert fake.calls == 2 * 3  # rows {0, 32} x cols {0, 32, 64}
    # scores are averaged over windows: within [0, max class prob]
    assert sem.min() >= 0 and sem.max() <= 0.7 + 1e-4
    # a small image is not windowed
    fake.calls = 0
    model([make_input(64, 64)])
    assert fake.calls == 1


def test_sliding_window_real_model_and_config():
    cfg = tiny_cfg("SiMaskFormer")
    cfg.TEST.SLIDING_WINDOW.ENABLED = True
    cfg.TEST.SLIDING_WINDOW.SIZE = 64
    cfg.TEST.SLIDING_WINDOW.STRIDE = 48
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    assert (model.sliding_window.size, model.sliding_window.stride) == (64, 48)
    sem = model([make_input(96, 96, orig=(50, 50))])[0]["sem_seg"]
    assert sem.shape == (1, 50, 50) and torch.isfinite(sem).all()


def test_simaskformer_instance_inference_uses_predicted_boxes():
    model = _model("SiMaskFormer", num_classes=2, ce=False, instance=True).eval()
    out = model([make_input(64, 64, orig=(32, 32))])[0]["instances"]
    assert len(out) == 5 and out.pred_boxes.tensor.shape == (5, 4)
    assert out.pred_boxes.tensor.min() >= 0 and out.pred_boxes.tensor.max() <= 32


SEED_CONFIGS = {
    # file: (dataset, NUM_CLASSES, MAX_ITER, STEPS, EVAL_START_ITER, CE mode)
    "isic2018/semantic-segmentation/simaskformer_R50_bs16_steplr.yaml":
        ("isic_sem_seg_train", 1, 14592, (9727, 12970), 7296, True),
    "polypdb_ins/semantic-segmentation/simaskformer_R50_bs16_steplr.yaml":
        ("polypdb_ins_sem_seg_train", 1, 14862, (9907, 13210), 3302, True),
    "vofo/semantic-segmentation/simaskformer_R50_bs16_steplr.yaml":
        ("vofo_sem_seg_train", 7, 13000, (7800, 10400), 6500, True),
    "polypdb_ins/instance-segmentation/simaskformer_R50_bs8.yaml":
        ("polypdb_ins_train", 2, 29722, (19815, 26420), 0, False),
}


@pytest.mark.parametrize("rel", sorted(SEED_CONFIGS))
def test_seed_configs(rel):
    from skinformer.config import get_cfg

    dataset, k, max_iter, steps, eval_start, ce = SEED_CONFIGS[rel]
    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(ROOT, "configs", rel))
    sim = cfg.MODEL.SIMASKFORMER
    assert cfg.MODEL.META_ARCHITECTURE == "SiMaskFormer" and cfg.DATASETS.TRAIN == (dataset,)
    assert cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES == k and sim.SEMANTIC_CE_LOSS == ce
    assert cfg.SOLVER.MAX_ITER == max_iter and tuple(cfg.SOLVER.STEPS) == steps
    assert cfg.TEST.EVAL_START_ITER == eval_start
    assert cfg.MODEL.SEM_SEG_HEAD.FPN_FUSION == "CONCAT" and sim.DEC_LAYERS == 9 and sim.DEC_N_POINTS == 8
    assert cfg.MODEL.BACKBONE.NAME == "build_resnet_backbone" and cfg.MODEL.RESNETS.NORM == "FrozenBN"
    assert cfg.SOLVER.CLIP_GRADIENTS.CLIP_VALUE == 0.01 and cfg.SOLVER.BASE_LR == 1e-4
    mapper = "InstanceMapper" if "instance" in rel else "SemanticMapper"
    assert cfg.INPUT.DATASET_MAPPER_NAME == mapper and cfg.INPUT.ROTATION.PROB == 0.5
    # the Mask2Former counterpart shares data and schedule
    m2f = get_cfg()
    m2f.merge_from_file(os.path.join(ROOT, "configs", rel.replace("simaskformer", "maskformer2")))
    assert m2f.MODEL.META_ARCHITECTURE == "MaskFormer" and m2f.SOLVER.MAX_ITER == max_iter
    assert m2f.DATASETS.TRAIN == (dataset,) and m2f.MODEL.SEM_SEG_HEAD.FPN_FUSION == "SUM"


def test_r50_simaskformer_size_matches_the_original():
    from skinformer.config import get_cfg

    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(ROOT, "configs", "isic2018/semantic-segmentation/simaskformer_R50_bs16_steplr.yaml"))
    model = build_model(cfg)
    # the original implementation's decoder has about 15.3 M parameters (C = 2 logits, L = 9, Q = 100)
    n_dec = sum(p.numel() for p in model.transformer_decoder.parameters())
    assert abs(n_dec / 1e6 - 15.3) < 0.1
    assert len(model.criterion.weight_dict) >= 106


@pytest.mark.parametrize("rel", [
    "quickstart/simaskformer_tiny_synthetic.yaml",
    "isic2017/semantic-segmentation/simaskformer_lite0_cpu_256.yaml",
    "isic2017/semantic-segmentation/maskformer2_lite0_cpu_256.yaml",
    "isic2017/semantic-segmentation/fpn_lite0_cpu_256.yaml",
    "isic2017/semantic-segmentation/deeplabv3plus_lite0_cpu_256.yaml",
    "isic2017/semantic-segmentation/unet_lite0_cpu_256.yaml",
])
def test_cpu_configs_build(rel):
    from skinformer.config import get_cfg

    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(ROOT, "configs", rel))
    assert cfg.MODEL.DEVICE == "cpu"
    model = build_model(cfg).eval()
    out = model([make_input(64, 64)])
    assert out[0]["sem_seg"].shape == (1, 64, 64)


@pytest.mark.parametrize("arch,instance", [("MaskFormer", False), ("SiMaskFormer", True)])
def test_autocast_training_and_float32_outputs(arch, instance):
    model = _model(arch, num_classes=2, ce=not instance, instance=instance)
    batch = [make_input(64, 64, seed=0), make_input(64, 64, seed=1)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = model(batch)
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    model.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(batch)[0]
    if instance:
        assert out["instances"].scores.dtype == torch.float32
    else:
        assert out["sem_seg"].dtype == torch.float32


@pytest.mark.parametrize("overrides,present,absent", [
    ({"UOME": False}, ["loss_ce_interm"], ["proposal_loss"]),
    ({"AMR": False}, ["proposal_loss", "loss_mask_dn"], []),
    ({"DN": "no"}, ["proposal_loss"], ["loss_ce_dn"]),
    ({"DN": "standard"}, ["loss_ce_dn", "loss_bbox_dn_0"], ["loss_mask_dn"]),
    ({"TWO_STAGE": False}, ["loss_ce_dn"], ["loss_ce_interm", "proposal_loss"]),
    ({"SML": False, "ORIGINAL_QUIRKS": True, "CLASS_COST_TYPE": "focal",
      "PROPOSAL_EMPTY_GT": "original"}, ["proposal_loss"], []),
])
def test_simaskformer_ablation_switches(overrides, present, absent, caplog):
    cfg = tiny_cfg("SiMaskFormer")
    for k, v in overrides.items():
        cfg.MODEL.SIMASKFORMER[k] = v
    torch.manual_seed(0)
    model = build_model(cfg)
    with caplog.at_level("INFO"):
        losses = model([make_input(seed=0), make_input(seed=1)])
    assert "has no weight" not in caplog.text
    assert all(k in losses for k in present) and not any(k in losses for k in absent)
    sum(losses.values()).backward()
    model.eval()
    assert model([make_input(seed=2)])[0]["sem_seg"].shape == (1, 64, 64)


@pytest.mark.parametrize("multilabel,num_classes", [(False, 1), (False, 3), (True, 3)])
def test_combine_masks_in_chunks_is_the_dense_formula(multilabel, num_classes):
    import types

    import torch.nn.functional as F

    from skinformer.modeling.meta_arch.mask_former import _MASK_CHUNK, MaskFormer

    torch.manual_seed(0)
    q = 2 * _MASK_CHUNK + 3  # chunks of every size, the last one partial
    probs = torch.rand(q, num_classes) / q
    logits = torch.randn(q, 6, 7) * 4
    model = types.SimpleNamespace(multilabel_on=multilabel, num_classes=num_classes)
    up = lambda m: F.interpolate(m[None], size=(12, 14), mode="bilinear", align_corners=False)[0]  # noqa: E731
    got = MaskFormer.combine_masks(model, probs, logits, up)
    masks = up(logits).sigmoid()
    if multilabel:
        want = torch.stack([(probs[:, c, None, None] * masks).amax(0) for c in range(num_classes)])
    else:
        want = torch.einsum("qc,qhw->chw", probs, masks)
        want = want.clamp(0, 1) if num_classes == 1 else want
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    # without a resize the logits are left as they are
    before = logits.clone()
    MaskFormer.combine_masks(model, probs, logits)
    assert torch.equal(logits, before)
