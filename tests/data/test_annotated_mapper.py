"""skinformer.data.mappers.base: the constructor and from_config the annotated-data mappers share."""
import os

import pytest

from skinformer.config import get_cfg
from skinformer.data import transforms as T
from skinformer.data.mappers import InstanceMapper, MultiLabelMapper, SemanticMapper
from skinformer.data.mappers.base import AnnotatedMapper

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
QUICK = os.path.join(_ROOT, "configs", "quickstart", "per_pixel_r18_synthetic.yaml")


def _cfg():
    cfg = get_cfg()
    cfg.merge_from_file(QUICK)
    cfg.INPUT.FORMAT = "BGR"
    cfg.INPUT.SIZE_DIVISIBILITY = 32
    return cfg


class _Flipless(AnnotatedMapper):
    """A new mapper: only its recipe differs."""

    @classmethod
    def build_augmentations(cls, cfg, is_train):
        return [T.Resize((16, 16))]

    def __call__(self, dataset_dict):
        return dataset_dict


def test_subclass_from_config_takes_its_recipe_and_the_datasets_metadata():
    cfg = _cfg()
    train, test = _Flipless(cfg, is_train=True), _Flipless(cfg, is_train=False)
    assert train.is_train and not test.is_train
    assert train.image_format == "BGR" and train.size_divisibility == 32
    assert [type(a).__name__ for a in train.augmentations.augs] == ["Resize"]
    assert set(train.metadata) == set(cfg.DATASETS.TRAIN) and set(test.metadata) == set(cfg.DATASETS.TEST)
    assert train.metadata[cfg.DATASETS.TRAIN[0]]["classes"] == ["lesion"]


def test_built_in_mappers_share_the_constructor():
    cfg = _cfg()
    for cls in (SemanticMapper, InstanceMapper):
        m = cls(cfg, is_train=True)
        assert m.image_format == "BGR" and m.size_divisibility == 32 and set(m.metadata) == set(cfg.DATASETS.TRAIN)
    # the instance mapper keeps its own (LSJ) recipe
    lsj = [type(a).__name__ for a in InstanceMapper(cfg, is_train=True).augmentations.augs]
    assert lsj != [type(a).__name__ for a in SemanticMapper(cfg, is_train=True).augmentations.augs]


def test_metadata_is_required_where_targets_are_decoded_with_it():
    for cls in (SemanticMapper, MultiLabelMapper):
        with pytest.raises(ValueError, match=f"{cls.__name__} needs the metadata of at least one dataset"):
            cls(is_train=True, augmentations=[])
    assert InstanceMapper(is_train=True, augmentations=[]).metadata == {}
