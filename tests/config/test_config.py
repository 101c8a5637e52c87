import pytest
import torch.nn as nn

from skinformer.config import ConfigError, configurable, get_cfg


def test_unknown_key_in_override_names_key_and_suggestion():
    cfg = get_cfg()
    with pytest.raises(ConfigError) as e:
        cfg.merge_from_list(["SOLVER.BASE_LRR", "0.1"])
    assert "SOLVER.BASE_LRR" in str(e.value) and "SOLVER.BASE_LR" in str(e.value)


def test_typed_overrides_and_tuple_parsing():
    cfg = get_cfg()
    cfg.merge_from_list(["SOLVER.BASE_LR", "0.5", "DATASETS.TRAIN", '("a", "b")', "SOLVER.MAX_ITER", "7"])
    assert cfg.SOLVER.BASE_LR == 0.5 and cfg.DATASETS.TRAIN == ("a", "b") and cfg.SOLVER.MAX_ITER == 7
    with pytest.raises(ValueError):
        cfg.merge_from_list(["SOLVER.MAX_ITER", '"many"'])  # str into an int key


def test_original_readme_quirk_without_trailing_comma_is_a_clear_error():
    cfg = get_cfg()
    with pytest.raises(ValueError):
        cfg.merge_from_list(["DATASETS.TRAIN", '("isic_sem_seg_train")'])


def test_base_inheritance_and_unknown_key_in_file(tmp_path):
    (tmp_path / "base.yaml").write_text("SOLVER:\n  BASE_LR: 0.2\n  MAX_ITER: 10\n")
    (tmp_path / "child.yaml").write_text("_BASE_: base.yaml\nSOLVER:\n  MAX_ITER: 20\n")
    cfg = get_cfg()
    cfg.merge_from_file(str(tmp_path / "child.yaml"))
    assert cfg.SOLVER.BASE_LR == 0.2 and cfg.SOLVER.MAX_ITER == 20
    (tmp_path / "bad.yaml").write_text("_BASE_: base.yaml\nSOLVER:\n  WARMUP_ITER: 3\n")
    with pytest.raises(ConfigError) as e:
        get_cfg().merge_from_file(str(tmp_path / "bad.yaml"))
    assert "SOLVER.WARMUP_ITER" in str(e.value) and "SOLVER.WARMUP_ITERS" in str(e.value)
    assert "bad.yaml" in str(e.value)


def test_yaml_is_loaded_safely(tmp_path):
    (tmp_path / "evil.yaml").write_text("SOLVER:\n  BASE_LR: !!python/object/apply:os.getcwd []\n")
    with pytest.raises(ValueError, match="safe"):
        get_cfg().merge_from_file(str(tmp_path / "evil.yaml"))


def test_missing_config_file():
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        get_cfg().merge_from_file("nope.yaml")


class _Head(nn.Module):
    @configurable
    def __init__(self, in_channels: int, num_classes: int = 3):
        super().__init__()
        self.num_classes = num_classes
        self.conv = nn.Conv2d(in_channels, num_classes, 1)

    @classmethod
    def from_config(cls, cfg, in_channels):
        return {"in_channels": in_channels, "num_classes": cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES}


def test_configurable_plain_args_and_cfg():
    assert _Head(in_channels=4, num_classes=2).num_classes == 2
    cfg = get_cfg()
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = 5
    assert _Head(cfg, in_channels=4).num_classes == 5
    assert _Head(cfg, in_channels=4, num_classes=9).num_classes == 9  # explicit kwargs override cfg


def test_configurable_function():
    def _from_cfg(cfg):
        return {"x": cfg.SOLVER.MAX_ITER}

    @configurable(from_config=_from_cfg)
    def f(x, y=1):
        return x + y

    cfg = get_cfg()
    cfg.SOLVER.MAX_ITER = 3
    assert f(cfg) == 4 and f(cfg, y=10) == 13 and f(1, 2) == 3


def test_dump_roundtrip(tmp_path):
    cfg = get_cfg()
    cfg.SOLVER.BASE_LR = 0.123
    p = tmp_path / "c.yaml"
    p.write_text(cfg.dump())
    cfg2 = get_cfg()
    cfg2.merge_from_file(str(p))
    assert cfg2.SOLVER.BASE_LR == 0.123


def test_binary_config_file_is_a_clear_error(tmp_path):
    import torch

    path = tmp_path / "model_final.pth"
    torch.save({"w": torch.zeros(3)}, path)  # a checkpoint passed as --config-file
    with pytest.raises(ValueError) as e:
        get_cfg().merge_from_file(str(path))
    assert "model_final.pth" in str(e.value) and "not a text YAML file" in str(e.value)


def test_missing_base_names_the_referencing_file(tmp_path):
    (tmp_path / "base_R50.yaml").write_text("SOLVER:\n  BASE_LR: 0.2\n")
    (tmp_path / "child.yaml").write_text("_BASE_: base_R5O.yaml\n")
    with pytest.raises(FileNotFoundError) as e:
        get_cfg().merge_from_file(str(tmp_path / "child.yaml"))
    msg = str(e.value)
    assert "base_R5O.yaml" in msg and "_BASE_ of" in msg and "child.yaml" in msg
    assert "Did you mean" in msg and "base_R50.yaml" in msg
    (tmp_path / "other.yaml").write_text("_BASE_: completely_different.yaml\n")
    with pytest.raises(FileNotFoundError) as e:
        get_cfg().merge_from_file(str(tmp_path / "other.yaml"))
    assert "Did you mean" not in str(e.value)


def test_key_suggestion_only_when_close():
    with pytest.raises(ConfigError) as e:
        get_cfg().merge_from_list(["SOLVER.BASE_LRR", "0.1"])
    assert "Did you mean 'SOLVER.BASE_LR'" in str(e.value)
    with pytest.raises(ConfigError) as e:
        get_cfg().merge_from_list(["FOO.BAR", "1"])
    assert "Did you mean" not in str(e.value) and "FOO.BAR" in str(e.value)
