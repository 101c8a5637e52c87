from skinformer.utils.collect_env import collect_env_info


def test_collect_env_lists_key_facts():
    info = collect_env_info()
    for key in ("PyTorch", "CUDA available", "timm", "fvcore", "MSDeformAttn op", "skinformer"):
        assert key in info, key
