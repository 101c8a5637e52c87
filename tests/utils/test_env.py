"""MODEL.DEVICE is checked when the config is set up, with a message naming the key."""
import argparse

import pytest
import torch

from skinformer.engine import setup_cfg
from skinformer.utils.env import resolve_device


def test_cpu_resolves():
    assert resolve_device("cpu") == torch.device("cpu")


def test_gpu_is_not_a_device_name():
    with pytest.raises(ValueError) as e:
        resolve_device("gpu")
    msg = str(e.value)
    assert "MODEL.DEVICE = 'gpu'" in msg and "cpu" in msg and "MODEL.DEVICE cpu" in msg


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without CUDA")
def test_cuda_without_cuda_fails_at_config_time():
    args = argparse.Namespace(config_file="", opts=["MODEL.DEVICE", "cuda"])
    with pytest.raises(ValueError) as e:
        setup_cfg(args)
    msg = str(e.value)
    assert "MODEL.DEVICE = 'cuda'" in msg and "CUDA is not available" in msg and "MODEL.DEVICE cpu" in msg


def test_cuda_index_beyond_the_devices():
    with pytest.raises(ValueError, match="MODEL.DEVICE = 'cuda:99'"):
        resolve_device("cuda:99")
