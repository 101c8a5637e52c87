"""EventStorage and writers: history, smoothing, JSON lines per period, ETA in the console line."""
import json
import logging

import pytest

from skinformer.engine import TrainerBase, hooks
from skinformer.utils.events import (CommonMetricPrinter, EventStorage, JSONWriter, TensorboardXWriter,
                                     get_event_storage)


class _Noop(TrainerBase):
    def run_step(self):
        get_event_storage().put_scalar("total_loss", 1.0 + self.iter)


@pytest.fixture
def events_log(caplog):
    # "skinformer" may have propagate=False after setup_logger(); listen on it directly
    lg = logging.getLogger("skinformer.utils.events")
    lg.addHandler(caplog.handler)
    caplog.set_level(logging.INFO, logger="skinformer.utils.events")
    yield caplog
    lg.removeHandler(caplog.handler)


def test_storage_basics():
    with pytest.raises(RuntimeError, match="EventStorage"):
        get_event_storage()
    with EventStorage(start_iter=3) as s:
        assert get_event_storage() is s
        s.put_scalar("a", 1.0)
        s.iter = 4
        s.put_scalar("a", 3.0)
        s.put_scalars(b=2.0, smoothing_hint=False)
        with s.name_scope("val"):
            s.put_scalar("x", 5)
        assert s.latest()["a"] == (3.0, 4)
        assert s.latest_with_smoothing_hint(2)["a"] == (2.0, 4)  # median over the window
        assert s.latest_with_smoothing_hint(2)["b"] == (2.0, 4)
        assert s.latest()["val/x"] == (5.0, 4)
        with pytest.raises(ValueError, match="smoothing_hint"):
            s.put_scalar("b", 1.0, smoothing_hint=True)


def test_json_writer_one_line_per_period(tmp_path):
    path = tmp_path / "metrics.json"
    t = _Noop()
    t.register_hooks([hooks.PeriodicWriter([JSONWriter(str(path), window_size=1)], period=2)])
    t.train(0, 6)
    lines = [json.loads(l) for l in path.read_text().splitlines()]
    assert [l["iteration"] for l in lines] == [1, 3, 5]
    assert lines[0]["total_loss"] == 2.0


def test_common_metric_printer_has_eta_and_losses(events_log):
    printer = CommonMetricPrinter(max_iter=100)
    with EventStorage() as s:
        for it in range(5):
            s.iter = it
            s.put_scalars(total_loss=1.0, loss_ce=0.5, time=0.5, data_time=0.1)
            s.put_scalar("lr", 0.01, smoothing_hint=False)
        printer.write()
    line = [r.getMessage() for r in events_log.records if "iter: 4" in r.getMessage()][-1]
    assert "eta: 0:00:47" in line  # 95 iterations left × 0.5 s
    for token in ("total_loss: 1", "loss_ce: 0.5", "time: 0.5000", "data_time: 0.1000", "lr: 0.01"):
        assert token in line, token


def test_common_metric_printer_silent_after_training(events_log):
    with EventStorage() as s:
        s.iter = 10
        s.put_scalar("total_loss", 1.0)
        CommonMetricPrinter(max_iter=10).write()
    assert not [r for r in events_log.records if "iter: 10" in r.getMessage()]


def test_tensorboard_writer(tmp_path):
    w = TensorboardXWriter(str(tmp_path))
    with EventStorage() as s:
        s.put_scalar("loss", 1.0)
        w.write()
    w.close()
    assert any(p.name.startswith("events.out.tfevents") for p in tmp_path.iterdir())


def _mask_former_losses(s):
    # a mask transformer's loss dict: final layer, 2 aux layers, denoising copies
    terms = {"loss_ce": 0.5, "loss_mask": 0.25, "loss_dice": 0.125}
    for suffix in ("", "_0", "_1", "_dn", "_dn_0"):
        s.put_scalars(**{k + suffix: v for k, v in terms.items()})
    s.put_scalar("total_loss", 4.375)


def test_console_line_shows_the_final_layer_terms(events_log):
    from skinformer.config import get_cfg

    cfg = get_cfg()  # the configured default patterns
    printer = CommonMetricPrinter(max_iter=100, terms=cfg.LOG.CONSOLE_TERMS, skip=cfg.LOG.CONSOLE_SKIP)
    with EventStorage() as s:
        _mask_former_losses(s)
        s.put_scalars(time=0.5, data_time=0.1)
        s.put_scalar("lr", 0.01, smoothing_hint=False)
        printer.write()
    line = [r.getMessage() for r in events_log.records if "iter: 0" in r.getMessage()][-1]
    assert "total_loss: 4.375  loss_ce: 0.5  loss_dice: 0.125  loss_mask: 0.25" in line
    assert "_0" not in line and "_dn" not in line
    for token in ("eta: ", "lr: 0.01", "time: 0.5000", "max_"):  # memory: max_mem (CUDA) or max_rss
        assert token in line, token


def test_console_terms_key_selects_terms(events_log):
    printer = CommonMetricPrinter(max_iter=100, terms=("loss_dice*",), skip=())
    with EventStorage() as s:
        _mask_former_losses(s)
        printer.write()
    line = events_log.records[-1].getMessage()
    assert "loss_dice_dn_0: 0.125" in line and "loss_ce" not in line and "total_loss: 4.375" in line


def test_json_writer_keeps_every_term(tmp_path):
    path = tmp_path / "metrics.json"
    with EventStorage() as s:
        _mask_former_losses(s)
        JSONWriter(str(path)).write()
    row = json.loads(path.read_text())
    assert {"loss_ce_1", "loss_mask_dn", "loss_dice_dn_0", "total_loss"} <= set(row) and len(row) == 17


def test_storage_state_restores_the_window():
    with EventStorage() as s:
        for it, v in enumerate([1.0, 9.0, 2.0]):
            s.iter = it
            s.put_scalar("loss", v)
        s.put_scalar("score", 7.0, smoothing_hint=False)  # not a window: not saved
        state = s.state_dict()
    assert set(state["history"]) == {"loss"}
    with EventStorage(start_iter=3) as r:
        r.load_state_dict(state)
        r.put_scalar("loss", 3.0)
        assert r.latest_with_smoothing_hint(4)["loss"] == (2.5, 3)  # median of 1, 9, 2, 3
