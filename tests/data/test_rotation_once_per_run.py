from skinformer.config import get_cfg
from skinformer.data.transforms import RandomRotation, build_augmentation


def _rotations(cfg):
    return [a for a in build_augmentation(cfg, is_train=True) if isinstance(a, RandomRotation)]


def test_rotation_is_per_sample_by_default():
    cfg = get_cfg()
    cfg.INPUT.ROTATION.PROB = 0.5
    (rot,) = _rotations(cfg)
    assert rot.prob == 0.5


def test_once_per_run_decides_for_the_whole_run():
    decisions = set()
    for seed in range(20):
        cfg = get_cfg()
        cfg.SEED = seed
        cfg.INPUT.ROTATION.PROB = 0.5
        cfg.INPUT.ROTATION.ONCE_PER_RUN = True
        rots = _rotations(cfg)
        assert len(rots) in (0, 1) and all(r.prob == 1.0 for r in rots)
        decisions.add(len(rots))
    assert decisions == {0, 1}


def test_original_quirks_is_a_model_key_only():
    # D2 has its own key (set by the *_original configs): the data pipeline never reads model keys
    cfg = get_cfg()
    cfg.SEED = 3
    cfg.MODEL.META_ARCHITECTURE = "SiMaskFormer"
    cfg.MODEL.SIMASKFORMER.ORIGINAL_QUIRKS = True
    cfg.INPUT.ROTATION.PROB = 0.5
    assert [r.prob for r in _rotations(cfg)] == [0.5]


def test_original_configs_set_once_per_run():
    import os

    root = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "configs")
    for rel in ("isic2018/semantic-segmentation/simaskformer_R50_bs16_steplr_original.yaml",
                "isic2018/semantic-segmentation/ablations/original_quirks.yaml",
                "quickstart/ablations/original_quirks.yaml"):
        cfg = get_cfg()
        cfg.merge_from_file(os.path.join(root, rel))
        assert cfg.MODEL.SIMASKFORMER.ORIGINAL_QUIRKS and cfg.INPUT.ROTATION.ONCE_PER_RUN, rel
