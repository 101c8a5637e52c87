import os
import subprocess
import sys
import zipfile

import pytest

from skinformer import model_zoo

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
NAME = "isic2018/semantic-segmentation/simaskformer_R50_bs16_steplr.yaml"


def test_get_config_file_and_config():
    path = model_zoo.get_config_file(NAME)
    assert os.path.isfile(path) and path.endswith(NAME)
    cfg = model_zoo.get_config(NAME)
    assert cfg.MODEL.META_ARCHITECTURE == "SiMaskFormer"
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        model_zoo.get_config_file("nope.yaml")


def test_wheel_ships_the_configs(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), ROOT], check=True, cwd=str(tmp_path), timeout=600)
    wheel = next(p for p in os.listdir(tmp_path) if p.endswith(".whl"))
    names = zipfile.ZipFile(tmp_path / wheel).namelist()
    assert f"skinformer/model_zoo/configs/{NAME}" in names
    assert "skinformer/model_zoo/configs/common/simaskformer_R50.yaml" in names  # its _BASE_
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "skinformer-predict = skinformer.cli.predict:main" in zipfile.ZipFile(tmp_path / wheel).read(entry_points).decode()
