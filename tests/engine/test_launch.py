"""launch(): single-process passthrough, free ports, and a real 2-process gloo run on CPU."""
import json

import pytest

import engine_toy
from skinformer.engine.launch import find_free_port, is_torchrun, launch, use_cuda_for_launch


def test_world_size_one_runs_in_process():
    seen = []
    launch(lambda a, b: seen.append((a, b)), 1, args=(1, 2))
    assert seen == [(1, 2)]


def test_find_free_port_and_auto_needs_single_machine():
    assert 0 < find_free_port() < 65536
    with pytest.raises(ValueError, match="single machine"):
        launch(print, 2, num_machines=2, dist_url="auto", device="cpu")


def test_cpu_device_forces_gloo(monkeypatch):
    assert use_cuda_for_launch(2, device="cpu") is False
    for v in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR"):
        monkeypatch.delenv(v, raising=False)
    assert not is_torchrun()


@pytest.mark.slow
def test_two_process_gloo_training(tmp_path):
    launch(engine_toy.two_process_main, 2, dist_url="auto", args=(str(tmp_path),), device="cpu")
    r = [json.loads((tmp_path / f"rank{i}.json").read_text()) for i in range(2)]
    assert [x["all_reduce"] for x in r] == [3.0, 3.0]  # 1 + 2 summed on both ranks
    assert r[0]["gathered"] == [0, 1] == r[1]["gathered"]
    assert r[0]["is_ddp"] == "DistributedDataParallel"
    assert r[0]["checksum"] == pytest.approx(r[1]["checksum"], abs=1e-9)  # DDP kept replicas identical
    assert r[0]["num_logged"] == 3 and r[1]["num_logged"] == 0  # metrics gathered on rank 0


@pytest.mark.slow
def test_worker_error_propagates(capfd):
    # a crash in one process surfaces in the parent (no hang), and its traceback names the rank
    with pytest.raises(Exception):
        launch(engine_toy.failing_main, 2, dist_url="auto", args=(), device="cpu")
    assert "rank 1 failed" in capfd.readouterr().err


def test_torchrun_env_initialises_from_env(monkeypatch):
    import torch.distributed as dist

    from skinformer.utils import comm

    monkeypatch.setattr(comm, "_LOCAL_PROCESS_GROUP", None)
    monkeypatch.setattr(comm, "_LOCAL_WORLD_SIZE", 1)
    env = {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1",
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(find_free_port())}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    seen = []
    # num_gpus_per_machine is ignored under torchrun: nothing is spawned
    launch(lambda: seen.append((dist.is_initialized(), dist.get_backend())), 4, device="cpu")
    assert seen == [(True, "gloo")]
    assert not dist.is_initialized()  # torn down afterwards


def test_rendezvous_timeout_has_clear_message():
    from datetime import timedelta

    from skinformer.engine.launch import _init_group

    url = f"tcp://127.0.0.1:{find_free_port()}"
    with pytest.raises(RuntimeError, match=r"could not join the process group.*world size 2"):
        _init_group("gloo", url, 2, 0, timedelta(seconds=2))  # rank 1 never comes
