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


def test_original_quirks_switch_implies_once_per_run():
    cfg = get_cfg()
    cfg.SEED = 3
    cfg.MODEL.META_ARCHITECTURE = "SiMaskFormer"
    cfg.MODEL.SIMASKFORMER.ORIGINAL_QUIRKS = True
    cfg.INPUT.ROTATION.PROB = 0.5
    assert all(r.prob == 1.0 for r in _rotations(cfg))


def test_once_per_run_is_resolved_by_the_config_layer():
    from skinformer.config import rotation_once_per_run

    cfg = get_cfg()
    assert not rotation_once_per_run(cfg)
    cfg.MODEL.SIMASKFORMER.ORIGINAL_QUIRKS = True
    cfg.MODEL.META_ARCHITECTURE = "MaskFormer"  # the switch belongs to SiMaskFormer only
    assert not rotation_once_per_run(cfg)
    cfg.MODEL.META_ARCHITECTURE = "SiMaskFormer"
    assert rotation_once_per_run(cfg)
    cfg.MODEL.SIMASKFORMER.ORIGINAL_QUIRKS = False
    cfg.INPUT.ROTATION.ONCE_PER_RUN = True
    assert rotation_once_per_run(cfg)
