"""Optimizer param groups, gradient clipping and the error for unknown names."""
import pytest
import torch
import torch.nn as nn

from skinformer.config import get_cfg
from skinformer.layers import LayerNorm2d
from skinformer.solver import build_optimizer, get_default_optimizer_params


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), LayerNorm2d(4))
        self.query_embed = nn.Embedding(5, 4)
        self.pos_embed = nn.Parameter(torch.zeros(1, 4))
        self.level_embed = nn.Parameter(torch.zeros(3, 4))
        self.head = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4), nn.GroupNorm(2, 4))
        self.frozen = nn.Linear(2, 2)
        self.frozen.requires_grad_(False)


def _cfg(**kw):
    cfg = get_cfg()
    cfg.SOLVER.BASE_LR = 1.0
    cfg.SOLVER.WEIGHT_DECAY = 0.05
    cfg.SOLVER.WEIGHT_DECAY_NORM = 0.0
    cfg.SOLVER.WEIGHT_DECAY_EMBED = 0.0
    cfg.SOLVER.BACKBONE_MULTIPLIER = 0.1
    for k, v in kw.items():
        node = cfg
        *parents, leaf = k.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = v
    return cfg


def _hp(opt, param):
    g = next(g for g in opt.param_groups if any(p is param for p in g["params"]))
    return g["lr"], g["weight_decay"]


def test_param_groups_rules_and_merging():
    m = Net()
    opt = build_optimizer(_cfg(), m)
    assert isinstance(opt, torch.optim.AdamW)
    assert _hp(opt, m.backbone[0].weight) == (pytest.approx(0.1), 0.05)  # backbone lr × 0.1
    assert _hp(opt, m.backbone[0].bias) == (pytest.approx(0.1), 0.05)  # conv bias keeps decay
    assert _hp(opt, m.backbone[1].weight) == (pytest.approx(0.1), 0.0)  # BN: no decay
    assert _hp(opt, m.backbone[2].weight) == (pytest.approx(0.1), 0.0)  # LayerNorm2d: no decay
    assert _hp(opt, m.query_embed.weight) == (1.0, 0.0)  # embedding
    assert _hp(opt, m.pos_embed) == (1.0, 0.0) and _hp(opt, m.level_embed) == (1.0, 0.0)
    assert _hp(opt, m.head[0].weight) == (1.0, 0.05)
    assert _hp(opt, m.head[1].weight) == (1.0, 0.0) and _hp(opt, m.head[2].bias) == (1.0, 0.0)
    # frozen params are skipped; identical hyper-parameters are merged into 4 groups
    assert not any(p is m.frozen.weight for g in opt.param_groups for p in g["params"])
    assert len(opt.param_groups) == 4
    assert sum(len(g["params"]) for g in opt.param_groups) == sum(
        1 for p in m.parameters() if p.requires_grad)


def test_bias_lr_factor_and_decay():
    m = Net()
    groups = get_default_optimizer_params(m, base_lr=1.0, weight_decay=0.05, bias_lr_factor=2.0,
                                          weight_decay_bias=0.0)
    g = next(g for g in groups if any(p is m.head[0].bias for p in g["params"]))
    assert g["lr"] == 2.0 and g["weight_decay"] == 0.0


@pytest.mark.parametrize("name,cls", [("ADAMW", torch.optim.AdamW), ("ADAM", torch.optim.Adam),
                                      ("SGD", torch.optim.SGD), ("sgd", torch.optim.SGD)])
def test_optimizer_table(name, cls):
    assert isinstance(build_optimizer(_cfg(**{"SOLVER.OPTIMIZER": name}), Net()), cls)


@pytest.mark.parametrize("name", ["ADAMW", "ADAM"])
def test_fused_optimizer_makes_the_same_update(name):
    torch.manual_seed(0)
    nets = [Net(), Net()]
    nets[1].load_state_dict(nets[0].state_dict())
    opts = [build_optimizer(_cfg(**{"SOLVER.OPTIMIZER": name, "SOLVER.BASE_LR": 0.01, "SOLVER.FUSED_OPTIMIZER": fused,
                                    "SOLVER.CLIP_GRADIENTS.ENABLED": True}), net)
            for net, fused in zip(nets, (False, True))]
    assert not opts[0].defaults.get("fused") and opts[1].defaults["fused"]
    for step in range(3):
        for net, opt in zip(nets, opts):
            torch.manual_seed(step)
            for p in net.parameters():
                if p.requires_grad:
                    p.grad = torch.randn_like(p)
            opt.step()
    for a, b in zip(nets[0].parameters(), nets[1].parameters()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    # resumable: the fused optimizer's state loads into a fresh one
    build_optimizer(_cfg(**{"SOLVER.OPTIMIZER": name}), nets[1]).load_state_dict(opts[1].state_dict())


def test_unknown_optimizer_lists_valid():
    with pytest.raises(ValueError, match=r"LAMB.*ADAM.*ADAMW.*SGD"):
        build_optimizer(_cfg(**{"SOLVER.OPTIMIZER": "LAMB"}), Net())


def _step_with_grads(cfg, grads):
    lin = nn.Linear(2, 2, bias=False)
    opt = build_optimizer(cfg, lin)
    lin.weight.grad = grads.clone()
    opt.step()
    return lin.weight.grad


def test_full_model_clipping():
    cfg = _cfg(**{"SOLVER.OPTIMIZER": "SGD", "SOLVER.CLIP_GRADIENTS.ENABLED": True,
                  "SOLVER.CLIP_GRADIENTS.CLIP_TYPE": "full_model", "SOLVER.CLIP_GRADIENTS.CLIP_VALUE": 1.0})
    g = _step_with_grads(cfg, torch.tensor([[3.0, 4.0], [0.0, 0.0]]))
    assert g.norm().item() == pytest.approx(1.0, rel=1e-4)
    # over several parameters: one joint norm
    m = nn.Sequential(nn.Linear(1, 1, bias=False), nn.Linear(1, 1, bias=False))
    opt = build_optimizer(cfg, m)
    m[0].weight.grad = torch.tensor([[3.0]])
    m[1].weight.grad = torch.tensor([[4.0]])
    opt.step()
    assert m[0].weight.grad.item() == pytest.approx(0.6, rel=1e-4)
    assert m[1].weight.grad.item() == pytest.approx(0.8, rel=1e-4)


def test_value_clipping():
    cfg = _cfg(**{"SOLVER.OPTIMIZER": "SGD", "SOLVER.CLIP_GRADIENTS.ENABLED": True,
                  "SOLVER.CLIP_GRADIENTS.CLIP_TYPE": "value", "SOLVER.CLIP_GRADIENTS.CLIP_VALUE": 0.5})
    g = _step_with_grads(cfg, torch.tensor([[3.0, -4.0], [0.1, 0.0]]))
    assert torch.equal(g, torch.tensor([[0.5, -0.5], [0.1, 0.0]]))


def test_unknown_clip_type():
    cfg = _cfg(**{"SOLVER.CLIP_GRADIENTS.ENABLED": True, "SOLVER.CLIP_GRADIENTS.CLIP_TYPE": "global"})
    with pytest.raises(ValueError, match="full_model"):
        build_optimizer(cfg, Net())
