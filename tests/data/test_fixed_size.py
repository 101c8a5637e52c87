"""INPUT.FIXED_SIZE: a squash to (H, W) of image and masks in the mappers at train and test time,
predictions back at the original size (predictor, evaluator), and the full-resolution ISIC 2017
val images going through the geometry of the stored 256-px copy."""
import os

import cv2
import numpy as np
import pytest
import torch

from skinformer.config import get_cfg
from skinformer.data import transforms as T
from skinformer.data.mappers import InferenceMapper, InstanceMapper, MultiLabelMapper, SemanticMapper
from skinformer.data.transforms import Resize, build_augmentation, build_lsj_augmentation, fixed_size

META = {"classes": ["lesion"], "ignore_label": 255, "has_background_class": False, "mask_encoding": "binary"}


def _cfg(fixed=(32, 48), **kw):
    cfg = get_cfg()
    cfg.INPUT.FIXED_SIZE = fixed
    cfg.INPUT.CROP.ENABLED = False
    cfg.INPUT.RANDOM_FLIP = "none"
    for k, v in kw.items():
        node = cfg
        *path, last = k.split(".")
        for p in path:
            node = node[p]
        node[last] = v
    return cfg


def _write_pair(tmp_path, h=60, w=100):
    img = np.zeros((h, w, 3), np.uint8)
    mask = np.zeros((h, w), np.uint8)
    mask[10:40, 20:80] = 255  # a rectangle that a squash maps to known rows/cols
    img[mask > 0] = 200
    f_img, f_mask = str(tmp_path / "a.png"), str(tmp_path / "a_mask.png")
    cv2.imwrite(f_img, img)
    cv2.imwrite(f_mask, mask)
    return {"file_name": f_img, "sem_seg_file_name": f_mask, "height": h, "width": w, "image_id": "a",
            "_aug_seed": 3}


def test_fixed_size_parsing():
    assert fixed_size(get_cfg()) is None
    assert fixed_size(_cfg((256, 128))) == (256, 128)
    for bad in [(256,), (0, 5), (2.5, 3)]:
        with pytest.raises(ValueError, match="INPUT.FIXED_SIZE"):
            fixed_size(_cfg(bad))


def test_pipelines_with_fixed_size():
    names = lambda augs: [type(a).__name__ for a in augs]  # noqa: E731
    cfg = _cfg((32, 48))
    assert names(build_augmentation(cfg, False)) == ["Resize"]
    assert build_augmentation(cfg, False)[0].shape == (32, 48)
    assert names(build_augmentation(cfg, True)) == ["Resize"]
    # rotation runs at the fixed size; an expanding rotation is resized back to it
    cfg = _cfg((32, 48), **{"INPUT.ROTATION.PROB": 1.0, "INPUT.CROP.ENABLED": True, "INPUT.CROP.SIZE": (16, 16)})
    assert names(build_augmentation(cfg, True)) == ["Resize", "RandomRotation", "Resize", "RandomCrop"]
    cfg.INPUT.ROTATION.EXPAND = False
    assert names(build_augmentation(cfg, True)) == ["Resize", "RandomRotation", "RandomCrop"]
    assert names(build_lsj_augmentation(cfg, True))[0] == "Resize"
    # off: the shortest-edge pipelines are unchanged
    assert names(build_augmentation(get_cfg(), False)) == ["ResizeShortestEdge"]
    assert "Resize" not in names(build_lsj_augmentation(get_cfg(), True))


def test_resize_squashes_and_uses_area_when_shrinking():
    img = np.random.default_rng(0).integers(0, 255, (64, 96, 3)).astype(np.uint8)
    tfm = Resize((16, 16)).get_transform(img, rng=np.random.default_rng(0))
    out = tfm.apply_image(img)
    assert out.shape == (16, 16, 3)
    np.testing.assert_array_equal(out, cv2.resize(img, (16, 16), interpolation=cv2.INTER_AREA))
    assert isinstance(Resize((64, 96)).get_transform(img, rng=None), T.NoOpTransform)
    big = Resize((128, 192)).get_transform(img, rng=None)
    assert big.interp == cv2.INTER_LINEAR and big.apply_image(img).shape == (128, 192, 3)
    with pytest.raises(ValueError, match="shape"):
        Resize((0, 3))


@pytest.mark.parametrize("is_train", [True, False])
def test_semantic_mapper_squashes_image_and_mask(tmp_path, is_train):
    d = _write_pair(tmp_path)
    cfg = _cfg((30, 50))
    mapper = SemanticMapper(is_train, augmentations=build_augmentation(cfg, is_train), metadata=META)
    out = mapper(d)
    assert tuple(out["image"].shape) == (3, 30, 50)
    assert (out["height"], out["width"]) == (60, 100)  # the ORIGINAL size travels on
    expected = np.full((30, 50), 1)  # background-not-a-class = K = 1
    expected[5:20, 10:40] = 0  # rows 10:40 / 2, cols 20:80 / 2
    np.testing.assert_array_equal(out["sem_seg"].numpy(), expected)


def test_inference_mapper_and_other_mappers(tmp_path):
    d = _write_pair(tmp_path)
    cfg = _cfg((30, 50))
    out = InferenceMapper(cfg)(d)
    assert tuple(out["image"].shape) == (3, 30, 50) and (out["height"], out["width"]) == (60, 100)
    ml = MultiLabelMapper(True, augmentations=build_augmentation(cfg, True), metadata={"classes": ["x"]})
    out = ml(dict(d, label_file_names=[d["sem_seg_file_name"]]))
    assert tuple(out["label_masks"].shape) == (1, 30, 50) and out["label_masks"][0, 5:20, 10:40].all()
    assert out["label_masks"].sum() == 15 * 30
    inst = InstanceMapper(True, augmentations=build_lsj_augmentation(_cfg((30, 50), **{
        "INPUT.IMAGE_SIZE": 50, "INPUT.MIN_SCALE": 1.0, "INPUT.MAX_SCALE": 1.0}), True))
    poly = [[20, 10, 80, 10, 80, 40, 20, 40]]
    out = inst(dict(d, annotations=[{"segmentation": poly, "category_id": 0, "iscrowd": 0}]))
    # squashed to 30x50, then LSJ at scale 1 into a 50x50 canvas: the box halves in both axes
    np.testing.assert_allclose(out["instances"].gt_boxes.tensor[0].numpy(), [10, 5, 40, 20], atol=1)


def test_predictor_squashes_and_maps_back(tmp_path):
    from skinformer.engine import DefaultPredictor
    from skinformer.modeling.meta_arch.build import META_ARCH_REGISTRY

    if "_FixedSizeProbe" not in META_ARCH_REGISTRY:
        @META_ARCH_REGISTRY.register()
        class _FixedSizeProbe(torch.nn.Module):
            """Records the network input size; foreground = red channel, resized to (height, width)."""
            seen = []

            def __init__(self, cfg):
                super().__init__()
                self.w = torch.nn.Parameter(torch.ones(1))

            def forward(self, batched_inputs):
                outs = []
                for d in batched_inputs:
                    type(self).seen.append(tuple(d["image"].shape))
                    s = (d["image"][0:1].float() / 255.0)[None]
                    outs.append({"sem_seg": torch.nn.functional.interpolate(
                        s, size=(d["height"], d["width"]), mode="bilinear", align_corners=False)[0]})
                return outs

    probe = META_ARCH_REGISTRY.get("_FixedSizeProbe")
    cfg = _cfg((16, 16))
    cfg.MODEL.META_ARCHITECTURE = "_FixedSizeProbe"
    cfg.DATASETS.TEST = ()
    torch.save({"model": {"w": torch.ones(1)}}, tmp_path / "w.pth")
    cfg.MODEL.WEIGHTS = str(tmp_path / "w.pth")
    img = np.zeros((40, 80, 3), np.uint8)
    img[:, :40, 0] = 255  # left half red
    out = DefaultPredictor(cfg)(img)
    assert probe.seen[-1] == (3, 16, 16)
    assert out["sem_seg"].shape == (1, 40, 80)
    fg = out["sem_seg"][0] > 0.5
    assert fg[:, :38].all() and not fg[:, 42:].any()


def test_evaluator_scores_at_ground_truth_resolution(tmp_path):
    from skinformer.evaluation import ISICTask1Evaluator

    gt = np.zeros((80, 120), np.uint8)
    gt[20:60, 30:90] = 255
    gt_file = str(tmp_path / "gt.png")
    cv2.imwrite(gt_file, gt)
    # a 40x40 prediction of the squashed image: the same rectangle at half height, third width
    scores = torch.zeros(1, 40, 40)
    scores[0, 10:30, 10:30] = 1.0
    inp = {"file_name": "x.jpg", "image_id": "x", "height": 40, "width": 40, "sem_seg_file_name": gt_file}
    ev = ISICTask1Evaluator(label_space={"classes": ["lesion"]}, resize_to_gt=True)
    ev.reset()
    ev.process([inp], [{"sem_seg": scores}])
    r = ev.evaluate()["isic_task1"]
    assert r["jaccard"] > 0.95
    strict = ISICTask1Evaluator(label_space={"classes": ["lesion"]})
    with pytest.raises(ValueError, match="80×120"):
        strict.process([inp], [{"sem_seg": scores}])


# ------------------------------------------------------------------------------------------
# real data: the six full-resolution ISIC 2017 val originals
# ------------------------------------------------------------------------------------------
_DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                     "..", "shared", "data")
_HAVE = os.path.isdir(os.path.join(_DATA, "isic2017_fullres")) and os.path.isdir(os.path.join(_DATA, "isic2017"))


@pytest.fixture
def shared_root(monkeypatch):
    if not _HAVE:
        pytest.skip(f"ISIC 2017 full-resolution data not found in {_DATA}")
    monkeypatch.setenv("SKINFORMER_DATASETS", _DATA)
    return _DATA


def _config_path():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return os.path.join(root, "configs", "isic2017", "semantic-segmentation", "Base-ISIC2017-cpu256.yaml")


def test_fullres_val_originals_get_the_stored_copy_geometry(shared_root):
    from skinformer.data.catalog import DatasetCatalog

    cfg = get_cfg()
    cfg.merge_from_file(_config_path())
    assert fixed_size(cfg) == (256, 256)
    mapper = InferenceMapper(cfg)
    dicts = DatasetCatalog.get("isic2017_fullres_sem_seg_val")
    assert len(dicts) == 6
    for d in dicts[:2]:  # the two smallest keep the test fast; all six share the code path
        out = mapper(d)
        assert tuple(out["image"].shape) == (3, 256, 256)
        assert (out["height"], out["width"]) == (d["height"], d["width"]) != (256, 256)
        stored = cv2.imread(os.path.join(shared_root, "isic2017", "images", d["image_id"] + ".jpg"))[:, :, ::-1]
        diff = np.abs(out["image"].permute(1, 2, 0).numpy().astype(float) - stored).mean()
        assert diff < 6.0, f"{d['image_id']}: mean |mapped original - stored 256-px copy| = {diff:.1f}"


def test_fullres_scores_match_the_256px_scores(shared_root):
    """Predicting the stored 256-px mask (an oracle at the training geometry) and mapping it back
    must score about the same against the original masks through both full-resolution datasets."""
    from skinformer.data.catalog import DatasetCatalog, MetadataCatalog
    from skinformer.data.mask_io import decode_binary, read_mask_array
    from skinformer.evaluation import ISICTask1Evaluator
    from skinformer.modeling.postprocessing import sem_seg_postprocess

    results = {}
    for name in ("isic2017_fullres_sem_seg_val", "isic2017_sem_seg_val_fullres"):
        cfg = get_cfg()
        cfg.MODEL.DEVICE = "cpu"
        ev = ISICTask1Evaluator(cfg, dataset_name=name)
        ev.reset()
        fullres_ids = {d["image_id"] for d in DatasetCatalog.get("isic2017_fullres_sem_seg_val")}
        for d in DatasetCatalog.get(name):
            if d["image_id"] not in fullres_ids:
                continue
            m = decode_binary(read_mask_array(os.path.join(shared_root, "isic2017", "masks",
                                                           d["image_id"] + "_segmentation.png")), "m")
            s = torch.from_numpy(m.astype(np.float32))[None]
            # the model contract: predictions at (height, width) of the input dict
            ev.process([d], [{"sem_seg": sem_seg_postprocess(s, (256, 256), d["height"], d["width"])}])
        results[name] = ev.evaluate()["isic_task1"]
    assert MetadataCatalog.get("isic2017_sem_seg_val_fullres").resize_predictions_to_gt
    a, b = results["isic2017_fullres_sem_seg_val"], results["isic2017_sem_seg_val_fullres"]
    assert a["jaccard"] > 0.9
    assert abs(a["jaccard"] - b["jaccard"]) < 0.02
