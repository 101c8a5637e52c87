"""tools/plot_metrics.py (skinformer.cli.plot_metrics, skinformer.utils.plot) on small hand-written
metrics.json files."""
import json
from pathlib import Path

import pytest

from skinformer.cli import plot_metrics
from skinformer.utils import plot as pm


def _write_run(folder: Path, lines):
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "metrics.json", "w") as f:
        for rec in lines:
            f.write((rec if isinstance(rec, str) else json.dumps(rec)) + "\n")
    return folder


def _training_lines(n=12, resumed=True):
    lines = [{"iteration": i, "total_loss": 10.0 - i, "loss_ce": 1.0, "lr": 1e-4 * (i + 1),
              "data_time": 0.01} for i in range(0, n, 2)]
    lines.append({"iteration": 5, "isic_task1/threshold_jaccard": 0.5, "isic_task1/dice": 0.6})
    if resumed:
        # a resumed run re-logs iterations 6 and 8 after its checkpoint at 5: last value wins
        lines += [{"iteration": i, "total_loss": 100.0 + i, "lr": 1e-4} for i in (6, 8)]
    lines.append({"iteration": n - 1, "isic_task1/threshold_jaccard": 0.7, "isic_task1/dice": 0.8})
    return lines


def _png_size(path):
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_load_keeps_last_value_per_iteration(tmp_path):
    run = _write_run(tmp_path / "r1", _training_lines())
    m = pm.load_metrics(str(run))
    assert list(m["total_loss"]) == [0, 2, 4, 6, 8, 10]
    assert m["total_loss"][4] == 6.0
    assert m["total_loss"][6] == 106.0 and m["total_loss"][8] == 108.0
    # a key absent from the repeated line keeps its earlier value
    assert m["loss_ce"][6] == 1.0
    assert m["isic_task1/threshold_jaccard"] == {5: 0.5, 11: 0.7}
    assert "iteration" not in m
    # a metrics.json path works as well as its folder
    assert pm.load_metrics(str(run / "metrics.json")) == m


def test_default_keys_are_total_loss_lr_and_eval_keys(tmp_path):
    a = pm.load_metrics(str(_write_run(tmp_path / "a", _training_lines())))
    b = pm.load_metrics(str(_write_run(tmp_path / "b", [
        {"iteration": 3, "total_loss": 1.0, "sem_seg/mIoU": 40.0}])))
    assert pm.default_keys([a, b]) == [
        "total_loss", "lr", "isic_task1/dice", "isic_task1/threshold_jaccard", "sem_seg/mIoU"]


def test_plot_two_runs_writes_png_grid(tmp_path):
    r1 = _write_run(tmp_path / "runs" / "r50", _training_lines())
    r2 = _write_run(tmp_path / "runs" / "swin", _training_lines(resumed=False))
    out = tmp_path / "figs" / "curves.png"
    ret = plot_metrics.main([str(r1), str(r2), "--out", str(out), "--smooth", "2"])
    assert ret == str(out) and out.is_file()
    w, h = _png_size(out)
    # 4 default keys -> 3 columns x 2 rows: wider than tall, two subplot rows high
    assert w > h > 400

    out1 = tmp_path / "one.png"
    plot_metrics.main([str(r1), "--keys", "loss_ce", "--out", str(out1)])
    w1, h1 = _png_size(out1)
    assert h1 < h and w1 < w


def test_duplicate_folder_names_get_disambiguated():
    assert pm.run_labels(["/x/a/model", "/x/b/model", "/x/c"]) == ["a/model", "b/model", "c"]
    assert pm.run_labels(["/x/r1", "/y/r2"]) == ["r1", "r2"]


def test_smooth_is_trailing_mean():
    assert pm.smooth([1, 3, 5, 7], 2) == [1, 2, 4, 6]
    assert pm.smooth([1, 3], 1) == [1, 3]


def test_missing_metrics_file_names_it(tmp_path):
    with pytest.raises(pm.MetricsFileError, match=r"nothere.metrics\.json"):
        pm.load_metrics(str(tmp_path / "nothere"))
    with pytest.raises(SystemExit, match="does not exist"):
        plot_metrics.main([str(tmp_path / "nothere"), "--out", str(tmp_path / "x.png")])
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("bad, what", [
    ('{"iteration": 3, "total_loss": 1.0', "not valid JSON"),
    ("[1, 2]", "JSON object"),
    ('{"total_loss": 1.0}', "iteration"),
    ('{"iteration": "7", "total_loss": 1.0}', "iteration"),
])
def test_malformed_line_reports_file_and_line_number(tmp_path, bad, what):
    run = _write_run(tmp_path / "r", [{"iteration": 0, "total_loss": 1.0}, "", bad])
    with pytest.raises(pm.MetricsFileError) as e:
        pm.load_metrics(str(run))
    msg = str(e.value)
    assert f"{run / 'metrics.json'}:3:" in msg and what in msg


def test_unknown_key_lists_available_keys(tmp_path):
    run = _write_run(tmp_path / "r", [{"iteration": 0, "total_loss": 1.0, "lr": 0.1}])
    with pytest.raises(SystemExit, match=r"'nope'.*total_loss"):
        plot_metrics.main([str(run), "--keys", "nope", "--out", str(tmp_path / "x.png")])


def test_draw_architecture_writes_small_png(tmp_path):
    from skinformer.cli import draw_architecture as arch

    out = arch.main(["--out", str(tmp_path / "arch.png")])
    assert _png_size(out) == (1600, 1000)
    assert Path(out).stat().st_size < 300 * 1024  # figures/architecture.png is committed
