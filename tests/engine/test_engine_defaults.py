"""engine.defaults: argument parser, setup, config checks, auto scaling, predictor, visualisation,
and (slow) exact resume through DefaultTrainer with the real loader and baseline model."""
import argparse
import os

import numpy as np
import pytest
import torch
import torch.nn as nn

from engine_toy import ToyTrainer, toy_cfg, train_until_interrupted
from skinformer.config import ConfigError, get_cfg
from skinformer.data.catalog import DatasetCatalog, MetadataCatalog
from skinformer.engine import (DefaultPredictor, DefaultTrainer, check_cfg_against_metadata,
                               default_argument_parser, default_setup, setup_cfg)
from skinformer.engine.hooks import CallbackHook
from skinformer.modeling.meta_arch.build import META_ARCH_REGISTRY
from skinformer.utils.env import seed_all_rng


def test_argument_parser_original_command_shape():
    args = default_argument_parser().parse_args(
        ["--config-file", "c.yaml", "--num-gpus", "1", "--resume", "DATASETS.TRAIN", '("x",)',
         "SOLVER.IMS_PER_BATCH", "4", "OUTPUT_DIR", "out/x"])
    assert args.config_file == "c.yaml" and args.resume and not args.eval_only
    assert args.num_gpus == 1 and args.num_machines == 1 and args.machine_rank == 0 and args.dist_url == "auto"
    assert args.opts == ["DATASETS.TRAIN", '("x",)', "SOLVER.IMS_PER_BATCH", "4", "OUTPUT_DIR", "out/x"]
    assert "torchrun" in default_argument_parser().epilog


def test_setup_cfg_unknown_key_names_nearest():
    args = argparse.Namespace(config_file="", opts=["SOLVER.BASE_LRR", "0.1"])
    with pytest.raises(ConfigError, match="SOLVER.BASE_LR'"):
        setup_cfg(args)
    cfg = setup_cfg(argparse.Namespace(config_file="", opts=["SOLVER.BASE_LR", "0.5"]))
    assert cfg.SOLVER.BASE_LR == 0.5 and cfg.is_frozen()


def test_default_setup_writes_config_and_seeds(tmp_path):
    out = tmp_path / "run"
    cfg = setup_cfg(argparse.Namespace(config_file="", opts=["OUTPUT_DIR", str(out), "SEED", "7"]))
    default_setup(cfg, argparse.Namespace(config_file="", eval_only=False))
    assert (out / "config.yaml").exists() and (out / "log.txt").exists()
    assert get_cfg().load_cfg(open(out / "config.yaml")).SEED == 7
    a = torch.rand(3)
    seed_all_rng(7)
    assert torch.equal(a, torch.rand(3))  # seeded with SEED + rank


def _register(name, classes, ignore=255):
    if name not in DatasetCatalog:
        DatasetCatalog.register(name, lambda: [])
        MetadataCatalog.get(name).set(classes=classes, ignore_label=ignore)


def test_num_classes_and_ignore_mismatch_errors():
    _register("_eng_meta_binary", ["lesion"])
    _register("_eng_meta_ign", ["lesion"], ignore=0)
    cfg = get_cfg()
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = 3
    with pytest.raises(ValueError) as e:
        check_cfg_against_metadata(cfg, ["_eng_meta_binary"])
    msg = str(e.value)
    assert "NUM_CLASSES = 3" in msg and "'_eng_meta_binary'" in msg and "1 classes" in msg
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = 1
    check_cfg_against_metadata(cfg, ["_eng_meta_binary"])
    with pytest.raises(ValueError, match=r"IGNORE_VALUE = 255.*'_eng_meta_ign'.*ignore_label = 0"):
        check_cfg_against_metadata(cfg, ["_eng_meta_ign"])
    with pytest.raises(ValueError, match="not registered"):
        check_cfg_against_metadata(cfg, ["_eng_meta_does_not_exist"])


def test_trainer_checks_metadata_at_startup(tmp_path):
    _register("_eng_meta_binary", ["lesion"])
    cfg = toy_cfg(str(tmp_path))
    cfg.DATASETS.TRAIN = ("_eng_meta_binary",)
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = 2
    with pytest.raises(ValueError, match="NUM_CLASSES = 2"):
        DefaultTrainer(cfg)


def test_missing_model_weights_names_key(tmp_path):
    cfg = toy_cfg(str(tmp_path))
    cfg.MODEL.WEIGHTS = str(tmp_path / "missing.pth")
    t = ToyTrainer(cfg)
    with pytest.raises(FileNotFoundError, match=r"MODEL.WEIGHTS = '.*missing.pth'"):
        t.resume_or_load(resume=False)


def test_auto_scale_workers():
    cfg = get_cfg()
    cfg.SOLVER.REFERENCE_WORLD_SIZE = 8
    cfg.SOLVER.IMS_PER_BATCH = 16
    cfg.SOLVER.BASE_LR = 0.1
    cfg.SOLVER.MAX_ITER = 1000
    cfg.SOLVER.STEPS = (600, 800)
    cfg.SOLVER.WARMUP_ITERS = 100
    cfg.SOLVER.CHECKPOINT_PERIOD = 500
    cfg.TEST.EVAL_PERIOD = 200
    cfg.freeze()
    new = DefaultTrainer.auto_scale_workers(cfg, 1)
    assert new.SOLVER.IMS_PER_BATCH == 2 and new.SOLVER.BASE_LR == pytest.approx(0.0125)
    assert new.SOLVER.MAX_ITER == 8000 and new.SOLVER.STEPS == (4800, 6400)
    assert new.SOLVER.WARMUP_ITERS == 800 and new.SOLVER.CHECKPOINT_PERIOD == 4000
    assert new.TEST.EVAL_PERIOD == 1600 and new.SOLVER.REFERENCE_WORLD_SIZE == 1
    assert new.is_frozen() and cfg.SOLVER.MAX_ITER == 1000  # input untouched
    assert DefaultTrainer.auto_scale_workers(cfg, 8) is cfg
    cfg2 = cfg.clone()
    cfg2.defrost()
    cfg2.SOLVER.REFERENCE_WORLD_SIZE = 0
    assert DefaultTrainer.auto_scale_workers(cfg2, 4) is cfg2


# ------------------------------------------------------------------------------------------
# predictor and overlays with a tiny registered segmentation model
# ------------------------------------------------------------------------------------------
if "_EngineToySeg" not in META_ARCH_REGISTRY:
    @META_ARCH_REGISTRY.register()
    class _EngineToySeg(nn.Module):
        """Foreground score = mean intensity of the red channel (deterministic, no training)."""

        def __init__(self, cfg):
            super().__init__()
            self.scale = nn.Parameter(torch.ones(1))

        def forward(self, batched_inputs):
            outs = []
            for d in batched_inputs:
                img = d["image"].float() / 255.0
                score = (img[0:1] * self.scale).clamp(0, 1)
                score = torch.nn.functional.interpolate(score[None], size=(d["height"], d["width"]),
                                                        mode="bilinear", align_corners=False)[0]
                outs.append({"sem_seg": score})
            return outs


def test_default_predictor_loads_weights_and_resizes(tmp_path):
    cfg = get_cfg()
    cfg.MODEL.META_ARCHITECTURE = "_EngineToySeg"
    cfg.DATASETS.TEST = ()
    cfg.INPUT.MIN_SIZE_TEST = 16
    cfg.INPUT.MAX_SIZE_TEST = 64
    weights = tmp_path / "w.pth"
    torch.save({"model": {"scale": torch.tensor([0.5])}}, weights)
    cfg.MODEL.WEIGHTS = str(weights)
    pred = DefaultPredictor(cfg)
    assert pred.model.scale.item() == 0.5
    img = np.zeros((40, 30, 3), np.uint8)
    img[:, :, 0] = 255
    out = pred(img)
    assert out["sem_seg"].shape == (1, 40, 30)
    assert torch.allclose(out["sem_seg"], torch.full((1, 40, 30), 0.5))
    cfg.MODEL.WEIGHTS = str(tmp_path / "nope.pth")
    with pytest.raises(FileNotFoundError, match="MODEL.WEIGHTS"):
        DefaultPredictor(cfg)


def test_default_predictor_batches_lists_returns_masks_and_runs_tta(tmp_path):
    cfg = get_cfg()
    cfg.MODEL.META_ARCHITECTURE = "_EngineToySeg"
    cfg.DATASETS.TEST = ()
    cfg.INPUT.MIN_SIZE_TEST = 16
    weights = tmp_path / "w.pth"
    torch.save({"model": {"scale": torch.tensor([1.0])}}, weights)
    cfg.MODEL.WEIGHTS = str(weights)
    pred = DefaultPredictor(cfg, batch_size=2)
    seen = []
    forward = pred.model.forward
    pred.model.forward = lambda batch: seen.append(len(batch)) or forward(batch)
    imgs = [np.zeros((40, 30, 3), np.uint8), np.zeros((20, 50, 3), np.uint8), np.zeros((33, 33, 3), np.uint8)]
    imgs[0][:20, :, 0] = 255  # top half red: foreground
    outs = pred(imgs)
    assert seen == [2, 1] and len(outs) == 3
    assert [tuple(o["mask"].shape) for o in outs] == [(40, 30), (20, 50), (33, 33)]
    # binary data, no background class: label 0 = lesion, 1 = background
    assert (outs[0]["mask"][:15] == 0).all() and (outs[0]["mask"][25:] == 1).all()
    # no test dataset: K unnamed classes, background no class, TEST.THRESHOLD unless given
    assert pred.label_space.classes == ("class 0",) and not pred.label_space.background_is_class
    assert pred.threshold == cfg.TEST.THRESHOLD and DefaultPredictor(cfg, threshold=0.8).threshold == 0.8
    assert outs[0]["sem_seg"].shape == (1, 40, 30)
    with pytest.raises(ValueError, match="Image 1"):
        pred([imgs[0], np.zeros((4, 4), np.uint8)])
    # TEST.AUG: the model sees the original pixels at every scale and flip
    cfg.TEST.AUG.ENABLED = True
    cfg.TEST.AUG.MIN_SIZES = (20, 40)
    cfg.TEST.AUG.VFLIP = True
    pred = DefaultPredictor(cfg)
    sizes = []
    forward = pred.model.forward
    pred.model.forward = lambda batch: sizes.extend(tuple(d["image"].shape[-2:]) for d in batch) or forward(batch)
    out = pred(imgs[0])
    assert sorted(set(sizes)) == [(27, 20), (53, 40)] and len(sizes) == 8
    assert out["sem_seg"].shape == (1, 40, 30) and (out["mask"][:15] == 0).all()


@pytest.fixture(scope="module")
def tiny_lesion(tmp_path_factory):
    from skinformer.data.datasets.synthetic import register_synthetic_lesion

    root = str(tmp_path_factory.mktemp("synth"))
    prefix = "_eng_synth"
    if f"{prefix}_train" not in DatasetCatalog:
        register_synthetic_lesion(prefix=prefix, image_size=64, num_train=8, num_val=4, root=root)
    return prefix


def test_visualize_with_test_time_augmentation(tmp_path, tiny_lesion):
    """Overlays through the TTA wrapper of a model that is in training mode (eval-only runs and the
    periodic overlays during training both hand one over)."""
    cfg = get_cfg()
    cfg.MODEL.META_ARCHITECTURE = "_EngineToySeg"
    cfg.DATASETS.TEST = (f"{tiny_lesion}_val",)
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.OUTPUT_DIR = str(tmp_path)
    cfg.TEST.NUM_VIS = 2
    cfg.TEST.AUG.ENABLED = True
    cfg.TEST.AUG.MIN_SIZES = (32, 48)
    model = DefaultTrainer.build_model(cfg)
    assert model.training
    paths = DefaultTrainer.visualize(cfg, model)
    assert len(paths) == 2 and all(os.path.isfile(p) for p in paths)
    assert model.training  # mode restored


def test_visualize_writes_overlays(tmp_path, tiny_lesion):
    import cv2

    cfg = get_cfg()
    cfg.MODEL.META_ARCHITECTURE = "_EngineToySeg"
    cfg.DATASETS.TEST = (f"{tiny_lesion}_val",)
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.INPUT.MIN_SIZE_TEST = 32
    cfg.OUTPUT_DIR = str(tmp_path)
    cfg.TEST.NUM_VIS = 3
    model = DefaultTrainer.build_model(cfg)
    paths = DefaultTrainer.visualize(cfg, model)
    assert len(paths) == 3 and all(p.startswith(str(tmp_path / "vis")) for p in paths)
    img = cv2.imread(paths[0])
    assert img is not None and img.shape[:2] == (64, 64)
    assert model.training  # mode restored
    # the overlays are logged to TensorBoard too
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path), size_guidance={"images": 0})
    events.Reload()
    stems = {os.path.splitext(os.path.basename(p))[0] for p in paths}
    assert set(events.Tags()["images"]) == {f"vis/{s}" for s in stems}
    logged = events.Images(f"vis/{sorted(stems)[0]}")[0]
    assert (logged.width, logged.height) == (64, 64)


# ------------------------------------------------------------------------------------------
# slow: exact resume through DefaultTrainer with the real data loader and baseline model
# ------------------------------------------------------------------------------------------
def _real_cfg(out, prefix, max_iter):
    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(os.path.dirname(__file__), "..", "..", "configs", "quickstart",
                                     "per_pixel_r18_synthetic.yaml"))
    cfg.DATASETS.TRAIN = (f"{prefix}_train",)
    cfg.DATASETS.TEST = (f"{prefix}_val",)
    cfg.DATASETS.VALIDATE_FIRST_N = 2
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.INPUT.MIN_SIZE_TRAIN = (48, 64)
    cfg.INPUT.MAX_SIZE_TRAIN = 96
    cfg.INPUT.CROP.SIZE = (48, 48)
    cfg.INPUT.MIN_SIZE_TEST = 48
    cfg.MODEL.TIMM.NAME = "resnet10t"  # smallest timm ResNet: keeps the test quick
    cfg.MODEL.SEM_SEG_HEAD.CONVS_DIM = 16
    cfg.SOLVER.IMS_PER_BATCH = 2
    cfg.SOLVER.MAX_ITER = max_iter
    cfg.SOLVER.WARMUP_ITERS = 2
    cfg.SOLVER.CHECKPOINT_PERIOD = 3
    cfg.TEST.EVAL_PERIOD = 0
    cfg.TEST.NUM_VIS = 0
    cfg.LOG_PERIOD = 1
    cfg.SEED = 3
    cfg.OUTPUT_DIR = str(out)
    return cfg


@pytest.mark.slow
def test_exact_resume_real_loader_and_model(tmp_path, tiny_lesion):
    pytest.importorskip("skinformer.modeling.meta_arch.per_pixel", reason="baseline model not available")

    class NoEval(DefaultTrainer):
        @classmethod
        def test(cls, cfg, model, evaluators=None):
            return {}

    def losses_of(trainer):
        got = {}
        trainer.register_hooks([CallbackHook(
            after_step=lambda tr: got.__setitem__(tr.iter, tr.storage.latest()["total_loss"][0]))])
        return got

    n = 6
    seed_all_rng(3)
    straight_t = NoEval(_real_cfg(tmp_path / "a", tiny_lesion, n))
    straight = losses_of(straight_t)
    straight_t.train()

    seed_all_rng(3)
    first = NoEval(_real_cfg(tmp_path / "b", tiny_lesion, n))

    train_until_interrupted(first, 4)

    seed_all_rng(99)
    resumed = NoEval(_real_cfg(tmp_path / "b", tiny_lesion, n))
    resumed.resume_or_load(resume=True)
    assert resumed.start_iter == 3
    after = losses_of(resumed)
    resumed.train()
    assert sorted(after) == [3, 4, 5]
    for it in (3, 4, 5):
        assert after[it] == straight[it], (it, after[it], straight[it])
