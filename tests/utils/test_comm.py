"""comm helpers without a process group (the 2-process gloo run is in tests/engine/test_launch.py)."""
import torch

from skinformer.utils import comm


def test_single_process_defaults():
    assert comm.get_world_size() == 1
    assert comm.get_rank() == 0 and comm.get_local_rank() == 0 and comm.get_local_size() == 1
    assert comm.is_main_process()
    comm.synchronize()  # no-op
    assert comm.all_gather({"a": 1}) == [{"a": 1}]
    assert comm.gather(3) == [3]
    t = torch.tensor([2.0])
    assert comm.all_reduce(t, op="mean") is t and t.item() == 2.0
    d = {"x": torch.tensor(1.0)}
    assert comm.reduce_dict(d) is d
    assert isinstance(comm.shared_random_seed(), int)


def test_destroy_process_group_allows_a_second_group(tmp_path):
    import torch.distributed as dist

    comm.destroy_process_group()  # no group: no-op
    for i in range(2):
        dist.init_process_group("gloo", init_method=f"file://{tmp_path / f'init{i}'}", rank=0, world_size=1)
        comm.create_local_process_group(1)  # asserts that no local group is left from the first round
        assert comm.all_gather(i) == [i]
        comm.destroy_process_group()
        assert not dist.is_initialized() and comm.get_local_size() == 1
