"""skinformer.model_zoo in a checkout; the configs shipped in a wheel are checked by tests/cli/test_wheel.py."""
import os

import pytest

from skinformer import model_zoo

NAME = "isic2018/semantic-segmentation/simaskformer_R50_bs16_steplr.yaml"


def test_get_config_file_and_config():
    path = model_zoo.get_config_file(NAME)
    assert os.path.isfile(path) and path.endswith(NAME)
    cfg = model_zoo.get_config(NAME)
    assert cfg.MODEL.META_ARCHITECTURE == "SiMaskFormer"
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        model_zoo.get_config_file("nope.yaml")
