"""ReduceLROnPlateau and EarlyStopping hooks in the DefaultTrainer (toy model, scripted
validation metric), exact resume of both, and epoch budgets converted to iterations."""
import logging
import os

import pytest
import torch

from skinformer.engine import launch
from skinformer.engine.hooks import CallbackHook, EarlyStopping, ReduceLROnPlateau
from skinformer.solver import apply_epoch_budgets, iters_per_epoch
from skinformer.utils import comm
from skinformer.utils.env import seed_all_rng
from skinformer.utils.events import get_event_storage

from engine_toy import ToyTrainer, toy_cfg, train_until_interrupted

# validation score after iteration i (evaluated every 2 iterations): improves, then stalls
SCORES = {1: 0.5, 3: 0.6, 5: 0.6, 7: 0.55, 9: 0.58, 11: 0.59, 13: 0.7, 15: 0.4, 17: 0.4, 19: 0.4}


class ScriptedTrainer(ToyTrainer):
    @classmethod
    def test(cls, cfg, model, evaluators=None):
        return {"val": {"dice": SCORES.get(get_event_storage().iter, 0.0)}}


def _record_lr(trainer):
    """lr used by each iteration (the LRScheduler hook's ``lr`` scalar: the head's group)."""
    lrs = {}
    trainer.register_hooks([CallbackHook(after_step=lambda t: lrs.__setitem__(t.iter, t.storage.latest()["lr"][0]))])
    return lrs


def _plateau_cfg(out, **kw):
    return toy_cfg(str(out), **{"SOLVER.MAX_ITER": 20, "SOLVER.WARMUP_ITERS": 0, "TEST.EVAL_PERIOD": 2,
                                "SOLVER.CHECKPOINT_PERIOD": 2, "SOLVER.LR_SCHEDULER_NAME": "ReduceLROnPlateau",
                                "SOLVER.PLATEAU.METRIC": "val/dice", "SOLVER.PLATEAU.PATIENCE": 1,
                                "SOLVER.PLATEAU.FACTOR": 0.5, **kw})


def test_reduce_on_plateau_known_sequence(tmp_path):
    t = ScriptedTrainer(_plateau_cfg(tmp_path / "a"))
    lrs = _record_lr(t)
    t.train()
    # best 0.6 at it 3; bad evals at 5, 7 (> patience 1) -> x0.5 from it 8; 9, 11 bad -> x0.5 from 12;
    # 13 improves; 15, 17 bad -> x0.5 from 18
    assert lrs[7] == pytest.approx(0.05) and lrs[8] == pytest.approx(0.025)
    assert lrs[11] == pytest.approx(0.025) and lrs[12] == pytest.approx(0.0125)
    assert lrs[17] == pytest.approx(0.0125) and lrs[18] == pytest.approx(0.00625)
    hook = next(h for h in t._hooks if isinstance(h, ReduceLROnPlateau))
    assert hook.num_reductions == 3 and hook.best == pytest.approx(0.7)
    # the same decisions as torch's ReduceLROnPlateau stepped once per evaluation
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.05)
    ref = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=0.5, patience=1, threshold=1e-4)
    for it in range(1, 19, 2):
        ref.step(SCORES[it])
        assert lrs[it + 1] == pytest.approx(opt.param_groups[0]["lr"]), it


def _interrupted(cfg, crash_at):
    seed_all_rng(0)
    first = ScriptedTrainer(cfg)
    seen = _record_lr(first)

    train_until_interrupted(first, crash_at)
    seed_all_rng(0)
    second = ScriptedTrainer(cfg)
    second.resume_or_load(resume=True)
    assert second.start_iter == crash_at
    rest = _record_lr(second)
    second.train()
    seen.update(rest)
    return seen, second


@pytest.mark.parametrize("name,extra", [
    ("ReduceLROnPlateau", {}),
    ("WarmupCosineRestartLR", {"SOLVER.COSINE_RESTART.T_0": 3, "SOLVER.COSINE_RESTART.T_MULT": 2,
                               "SOLVER.PLATEAU.METRIC": ""}),
    ("OneCycleLR", {"SOLVER.PLATEAU.METRIC": ""}),
    ("WarmupStepLR", {"SOLVER.STEP_SIZE": 3, "SOLVER.GAMMA": 0.5, "SOLVER.PLATEAU.METRIC": ""}),
    ("WarmupExponentialLR", {"SOLVER.GAMMA": 0.9}),  # composed with the plateau scale
])
def test_interrupted_and_resumed_lr_sequence_is_exact(tmp_path, name, extra):
    cfg = _plateau_cfg(tmp_path / "straight", **{"SOLVER.LR_SCHEDULER_NAME": name, **extra})
    seed_all_rng(0)
    straight_t = ScriptedTrainer(cfg)
    straight = _record_lr(straight_t)
    straight_t.train()
    # crash at 10: the last checkpoint (iteration 9) is an evaluation iteration with a reduction pending
    cfg2 = cfg.clone()
    cfg2.OUTPUT_DIR = str(tmp_path / "resumed")
    resumed, _ = _interrupted(cfg2, crash_at=10)
    assert sorted(resumed) == sorted(straight)
    for i in straight:
        assert resumed[i] == pytest.approx(straight[i], rel=1e-12), i
    if name == "ReduceLROnPlateau":
        assert len(set(straight.values())) == 4  # three reductions happened on the way


def test_early_stopping_keeps_best_and_final(tmp_path, caplog):
    cfg = toy_cfg(str(tmp_path), **{"SOLVER.MAX_ITER": 20, "TEST.EVAL_PERIOD": 2, "SOLVER.CHECKPOINT_PERIOD": 100,
                                    "SOLVER.EARLY_STOPPING.PATIENCE": 2, "SOLVER.EARLY_STOPPING.METRIC": "val/dice"})
    t = ScriptedTrainer(cfg)
    steps = _record_lr(t)
    with caplog.at_level(logging.INFO, logger="skinformer"):
        t.train()
    # best 0.6 at 3; 5 (equal) and 7 are not better -> stop after iteration 7
    assert max(steps) == 7 and t.iter == 8
    assert "Early stopping at iteration 7" in caplog.text
    assert os.path.exists(tmp_path / "model_best.pth") and os.path.exists(tmp_path / "model_final.pth")
    best = torch.load(tmp_path / "model_best.pth", weights_only=False)
    assert best["iteration"] == 3
    # resuming a stopped run does not train further
    t2 = ScriptedTrainer(cfg)
    t2.resume_or_load(resume=True)
    more = _record_lr(t2)
    t2.train()
    assert more == {}
    stop = next(h for h in t2._hooks if isinstance(h, EarlyStopping))
    assert stop.stopped_iter == 7


def test_early_stopping_resume_is_exact(tmp_path):
    kw = {"SOLVER.MAX_ITER": 30, "TEST.EVAL_PERIOD": 2, "SOLVER.CHECKPOINT_PERIOD": 2,
          "SOLVER.EARLY_STOPPING.PATIENCE": 3, "SOLVER.EARLY_STOPPING.METRIC": "val/dice"}
    seed_all_rng(0)
    t = ScriptedTrainer(toy_cfg(str(tmp_path / "a"), **kw))
    straight = _record_lr(t)
    t.train()
    resumed, t2 = _interrupted(toy_cfg(str(tmp_path / "b"), **kw), crash_at=8)
    # best 0.6 at 3; 5, 7, 9 not better -> stops after 9 in both runs
    assert max(straight) == max(resumed) == 9
    assert resumed == pytest.approx(straight)


def test_missing_metric_and_missing_eval_are_clear_errors(tmp_path):
    cfg = _plateau_cfg(tmp_path, **{"SOLVER.PLATEAU.METRIC": "val/dcie"})
    with pytest.raises(KeyError, match="val/dcie"):
        ScriptedTrainer(cfg).train()
    cfg = toy_cfg(str(tmp_path / "b"), **{"SOLVER.EARLY_STOPPING.PATIENCE": 2, "SOLVER.EARLY_STOPPING.METRIC": "v/d"})
    with pytest.raises(ValueError, match="EVAL_PERIOD"):
        ScriptedTrainer(cfg)
    cfg = toy_cfg(str(tmp_path / "c"), **{"SOLVER.EARLY_STOPPING.PATIENCE": 2, "TEST.EVAL_PERIOD": 2})
    with pytest.raises(ValueError, match="BEST_CHECKPOINT_METRIC"):
        ScriptedTrainer(cfg)


def test_epoch_budgets(caplog):
    cfg = toy_cfg("unused", **{"SOLVER.IMS_PER_BATCH": 4, "SOLVER.ACCUMULATE_STEPS": 2, "SOLVER.MAX_EPOCHS": 3,
                               "SOLVER.CHECKPOINT_PERIOD_EPOCHS": 1, "TEST.EVAL_PERIOD_EPOCHS": 2})
    assert iters_per_epoch(cfg, 50) == 7  # ceil(50 / 8)
    with caplog.at_level(logging.INFO, logger="skinformer"):
        out = apply_epoch_budgets(cfg, 50)
    assert (out.SOLVER.MAX_ITER, out.SOLVER.CHECKPOINT_PERIOD, out.TEST.EVAL_PERIOD) == (21, 7, 14)
    assert "1 epoch = 7 iterations" in caplog.text
    assert cfg.SOLVER.MAX_ITER == 12  # the input is not modified
    unchanged = toy_cfg("unused")
    assert apply_epoch_budgets(unchanged, 50) is unchanged


class MainOnlyScripted(ToyTrainer):
    """Like real evaluators: only the main process gets results."""

    @classmethod
    def test(cls, cfg, model, evaluators=None):
        if not comm.is_main_process():
            return {}
        return ScriptedTrainer.test(cfg, model)


def two_process_stop_main(output_dir: str) -> None:
    import json

    cfg = _plateau_cfg(output_dir, **{"SOLVER.CHECKPOINT_PERIOD": 100, "SOLVER.EARLY_STOPPING.PATIENCE": 3,
                                      "SOLVER.EARLY_STOPPING.METRIC": "val/dice"})
    t = MainOnlyScripted(cfg)
    lrs = _record_lr(t)
    t.train()
    with open(os.path.join(output_dir, f"rank{comm.get_rank()}.json"), "w") as f:
        json.dump({"lrs": {str(k): v for k, v in lrs.items()}}, f)


@pytest.mark.slow
def test_two_processes_take_the_same_decisions(tmp_path):
    import json

    launch(two_process_stop_main, 2, dist_url="auto", args=(str(tmp_path),), device="cpu")
    r = [json.loads((tmp_path / f"rank{i}.json").read_text())["lrs"] for i in range(2)]
    assert r[0] == r[1]  # same lr reductions and the same stopping iteration on both ranks
    assert max(int(k) for k in r[0]) == 9 and r[0]["9"] < r[0]["0"]
