"""Feed the command-line tools bad input, as a new user would, and classify what happens.

Every case runs the real command-line program (``python -m skinformer.cli.<program>``, the code
behind ``tools/*.py`` and the console commands) in a subprocess inside a scratch folder and is
classified as:

* ``clean error``: non-zero exit and the last line of output names what the case expects
  (the file, the key or the value) — a Python traceback above it is allowed (detectron2 style);
* ``accepted``: the input is legitimate and the command did the right thing (checked);
* ``silent result``: exit 0 on bad input, or a wrong result;
* ``data lost``: a file that existed before the command is gone or changed;
* ``raw traceback``: non-zero exit whose last line does not name the problem.

``python tools/robustness_check.py [--keep DIR]`` prints one row per case and the totals; it exits
non-zero when any case is silent, lost data or ended in a raw traceback. About 3-6 minutes on 2 cores.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Callable, List, Optional

import numpy as np

from skinformer.model_zoo import get_config_file

# the folder holding the ``skinformer`` package, on the subprocesses' PYTHONPATH (a checkout runs
# without an install)
_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = get_config_file("quickstart/per_pixel_r18_synthetic.yaml")
SMF = get_config_file("quickstart/simaskformer_tiny_synthetic.yaml")
# script name -> the skinformer.cli module it runs
_PROGRAMS = {"train_net.py": "train", "evaluate.py": "evaluate", "predict.py": "predict"}
FAST = ["SOLVER.MAX_ITER", "2", "SOLVER.WARMUP_ITERS", "1", "TEST.EVAL_PERIOD", "0", "SOLVER.IMS_PER_BATCH", "2",
        "DATALOADER.NUM_WORKERS", "0", "SEED", "0"]


class Case:
    def __init__(self, family: str, name: str, argv: List[str], *, expect: Optional[List[str]] = None,
                 check: Optional[Callable[[str, subprocess.CompletedProcess], Optional[str]]] = None,
                 keep: Optional[List[str]] = None, setup: Optional[Callable[[str], None]] = None):
        self.family, self.name, self.argv = family, name, argv
        self.expect = expect  # error case: substrings the last lines must contain
        self.check = check  # accepted case: returns None when right, else what is wrong
        self.keep = keep or []  # files that must survive unchanged
        self.setup = setup


def _py(*args: str) -> List[str]:
    return [sys.executable, *args]


def _tool(name: str, *args: str) -> List[str]:
    return _py("-m", f"skinformer.cli.{_PROGRAMS[name]}", *args)


def _write_png(path: str, array: np.ndarray) -> None:
    import cv2

    os.makedirs(os.path.dirname(path), exist_ok=True)
    cv2.imwrite(path, array if array.ndim == 2 else array[..., ::-1])


def _fixtures(work: str) -> None:
    """A trained tiny model, images, masks and config files the cases use."""
    run = os.path.join(work, "run")
    subprocess.run(_tool("train_net.py", "--config-file", TINY, "OUTPUT_DIR", run, *FAST), check=True,
                   cwd=work, capture_output=True)
    h = w = 64
    yy, xx = np.mgrid[:h, :w]
    lesion = ((yy - 32) ** 2 + (xx - 30) ** 2 < 15 ** 2)
    img = np.full((h, w, 3), 200, np.uint8)
    img[lesion] = (90, 40, 30)
    _write_png(f"{work}/images/case1.png", img)
    _write_png(f"{work}/images/case1.jpg", img)
    _write_png(f"{work}/images2/case1.png", img)
    _write_png(f"{work}/img16/deep.png", (img.astype(np.uint16) * 257))
    gt = lesion.astype(np.uint8) * 255
    _write_png(f"{work}/gt/ISIC_0000001_segmentation.png", gt)
    _write_png(f"{work}/pred_same/ISIC_0000001_segmentation.png", gt)
    red = np.zeros((h, w, 3), np.uint8)
    red[lesion] = (255, 0, 0)
    _write_png(f"{work}/pred_red/ISIC_0000001_segmentation.png", red)
    _write_png(f"{work}/pred_index/ISIC_0000001_segmentation.png", lesion.astype(np.uint8) * 2)
    with open(f"{work}/binary.yaml", "wb") as f:
        f.write(bytes(range(256)) * 8)
    with open(f"{work}/missing_base.yaml", "w") as f:
        f.write('_BASE_: "no_such_base.yaml"\n')
    torch_code = (
        "import torch, argparse; torch.save({'model': argparse.Namespace(w=1)}, 'unsafe.pth');"
        "torch.save({'conv1.weight': torch.zeros(8, 3, 7, 7)}, 'trunc.pth');"
        "b = open('trunc.pth', 'rb').read(); open('trunc.pth', 'wb').write(b[:60])"
    )
    subprocess.run(_py("-c", torch_code), check=True, cwd=work)


def _json_metric(path: str, key: str) -> float:
    with open(path) as f:
        data = json.load(f)
    flat = {}

    def walk(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, dict):
                walk(v, prefix + k + "/")
            else:
                flat[prefix + k] = v
    walk(data)
    hits = [v for k, v in flat.items() if k.endswith(key)]
    return float(hits[0]) if hits else float("nan")


def _cases(work: str) -> List[Case]:
    run = os.path.join(work, "run")
    weights = os.path.join(run, "model_final.pth")
    train = lambda *a: _tool("train_net.py", "--config-file", TINY, *a)  # noqa: E731

    def jaccard_is_one(result: str):
        def check(work_dir, proc):
            value = _json_metric(os.path.join(work_dir, result), "jaccard")
            return None if abs(value - 1.0) < 1e-6 else f"Jaccard {value}, expected 1.0"
        return check

    def predictions_apart(out: str, n: int):
        def check(work_dir, proc):
            files = [f for _, _, fs in os.walk(os.path.join(work_dir, out)) for f in fs if f.endswith(".png")
                     and "overlay" not in f]
            return None if len(files) >= n else f"{len(files)} mask files written for {n} inputs (collision)"
        return check

    def deep_image_not_white(work_dir, proc):
        code = ("from skinformer.data.mask_io import read_image; im = read_image('img16/deep.png');"
                "print(int(im.min()), int(im.max()))")
        out = subprocess.run(_py("-c", code), cwd=work_dir, capture_output=True, text=True)
        lo, hi = map(int, out.stdout.split())
        return None if lo < 128 else f"16-bit image read as min {lo} / max {hi} (clipped to white)"

    def checkpoint_mode(work_dir, proc):
        umask = os.umask(0)
        os.umask(umask)
        mode = os.stat(weights).st_mode & 0o777
        return None if mode == (0o666 & ~umask) else f"model_final.pth has mode {oct(mode)}, umask gives {oct(0o666 & ~umask)}"

    def clamped(work_dir, proc):
        return None if proc.returncode == 0 else "a short run with WARMUP_ITERS >= MAX_ITER was refused"

    return [
        # configs
        Case("config", "unknown key", train("SOLVER.MAX_ITERS", "3"), expect=["SOLVER.MAX_ITERS"]),
        Case("config", "binary --config-file", _tool("train_net.py", "--config-file", "binary.yaml"),
             expect=["binary.yaml"]),
        Case("config", "missing _BASE_", _tool("train_net.py", "--config-file", "missing_base.yaml"),
             expect=["no_such_base.yaml", "missing_base.yaml"]),
        Case("config", "MODEL.DEVICE gpu", train("MODEL.DEVICE", "gpu"), expect=["MODEL.DEVICE"]),
        Case("config", "MODEL.DEVICE cuda without CUDA", train("MODEL.DEVICE", "cuda"), expect=["MODEL.DEVICE"]),
        Case("config", "unknown meta-architecture", train("MODEL.META_ARCHITECTURE", "MaskFormerX"),
             expect=["MODEL.META_ARCHITECTURE"]),
        Case("config", "unknown backbone", train("MODEL.BACKBONE.NAME", "TimmBackbon"), expect=["MODEL.BACKBONE.NAME"]),
        Case("config", "unknown sem-seg head", train("MODEL.SEM_SEG_HEAD.NAME", "UNet"),
             expect=["MODEL.SEM_SEG_HEAD.NAME"]),
        Case("config", "unknown mapper", train("INPUT.DATASET_MAPPER_NAME", "Semantic"),
             expect=["INPUT.DATASET_MAPPER_NAME"]),
        Case("config", "unknown pixel decoder", _tool("train_net.py", "--config-file", SMF,
                                                       "MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME", "MSDeform"),
             expect=["PIXEL_DECODER_NAME"]),
        Case("config", "WARMUP_ITERS >= MAX_ITER is clamped",
             train("OUTPUT_DIR", "warm", *FAST, "SOLVER.WARMUP_ITERS", "50"), check=clamped),
        # checkpoints and weights
        Case("checkpoint", "--eval-only with another architecture's weights",
             _tool("train_net.py", "--config-file", SMF, "--eval-only", "MODEL.WEIGHTS", weights,
                   "OUTPUT_DIR", "evalx"), expect=["MODEL.ALLOW_PARTIAL_WEIGHTS"]),
        Case("checkpoint", "truncated MODEL.TIMM.PRETRAINED_FILE", train("MODEL.TIMM.PRETRAINED_FILE", "trunc.pth"),
             expect=["trunc.pth"]),
        Case("checkpoint", "unsafe MODEL.TIMM.PRETRAINED_FILE", train("MODEL.TIMM.PRETRAINED_FILE", "unsafe.pth"),
             expect=["unsafe.pth"]),
        Case("checkpoint", "missing MODEL.WEIGHTS", train("--eval-only", "MODEL.WEIGHTS", "nope.pth"),
             expect=["nope.pth"]),
        Case("training", "new run into an earlier run's OUTPUT_DIR", train("OUTPUT_DIR", run, *FAST),
             expect=["--resume"], keep=[weights, os.path.join(run, "last_checkpoint")]),
        Case("training", "--resume after the KEY VALUE pairs", train("OUTPUT_DIR", run, *FAST, "SOLVER.MAX_ITER", "3",
                                                                     "--resume"),
             check=lambda d, p: None if p.returncode == 0 else "--resume after overrides refused"),
        Case("training", "checkpoints follow the umask", ["true"], check=checkpoint_mode),
        # data
        Case("data", "16-bit PNG image", ["true"], check=deep_image_not_white),
        # evaluate.py
        Case("evaluate", "ISIC submission names pair by default",
             _tool("evaluate.py", "--gt-dir", "gt", "--pred-dir", "pred_same", "--metric", "isic_task1",
                   "--output", "same.json"), check=jaccard_is_one("same.json")),
        Case("evaluate", "pure red colour mask is foreground",
             _tool("evaluate.py", "--gt-dir", "gt", "--pred-dir", "pred_red", "--metric", "isic_task1",
                   "--output", "red.json"), check=jaccard_is_one("red.json")),
        Case("evaluate", "label map {0,2} given to a binary metric",
             _tool("evaluate.py", "--gt-dir", "gt", "--pred-dir", "pred_index", "--metric", "isic_task1"),
             expect=["ISIC_0000001_segmentation.png"]),
        Case("evaluate", "missing prediction folder",
             _tool("evaluate.py", "--gt-dir", "gt", "--pred-dir", "no_such_dir", "--metric", "isic_task1"),
             expect=["no_such_dir"]),
        # predict.py
        Case("predict", "same stem with two extensions",
             _tool("predict.py", "--config-file", os.path.join(run, "config.yaml"), "--input", "images",
                   "--output", "pred_ext", "MODEL.WEIGHTS", weights), check=predictions_apart("pred_ext", 2)),
        Case("predict", "same names in two input folders",
             _tool("predict.py", "--config-file", os.path.join(run, "config.yaml"), "--input", "images/case1.png",
                   "images2", "--output", "pred_dirs", "MODEL.WEIGHTS", weights),
             check=predictions_apart("pred_dirs", 2)),
        Case("predict", "input that does not exist",
             _tool("predict.py", "--config-file", os.path.join(run, "config.yaml"), "--input", "nothing_here",
                   "--output", "pred_none", "MODEL.WEIGHTS", weights), expect=["nothing_here"]),
    ]


def _last_lines(text: str, n: int = 3) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return "\n".join(lines[-n:])


def classify(case: Case, work: str) -> (str, str):
    before = {p: os.path.getmtime(p) for p in case.keep if os.path.exists(p)}
    proc = subprocess.run(case.argv, cwd=work, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": _PACKAGE_PARENT + os.pathsep + os.environ.get("PYTHONPATH", "")})
    tail = _last_lines(proc.stdout + "\n" + proc.stderr)
    lost = [p for p, t in before.items() if not os.path.exists(p) or os.path.getmtime(p) != t]
    if lost:
        return "data lost", f"changed or removed: {lost}"
    if case.check is not None:
        problem = case.check(work, proc)
        if problem is None:
            return "accepted", ""
        return ("silent result" if proc.returncode == 0 else "raw traceback"), problem + " | " + tail[-300:]
    if proc.returncode == 0:
        return "silent result", "exit 0 on bad input"
    if all(s in tail for s in case.expect):
        return "clean error", tail.splitlines()[-1][-160:]
    return "raw traceback", tail[-300:]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keep", default="", help="scratch folder to keep (default: a temporary one)")
    args = parser.parse_args(argv)
    work = args.keep or tempfile.mkdtemp(prefix="skinformer-robustness-")
    os.makedirs(work, exist_ok=True)
    start = time.time()
    print(f"Preparing fixtures in {work} (a 2-iteration training run) ...", flush=True)
    _fixtures(work)
    rows, counts = [], {}
    cases = _cases(work)
    for i, case in enumerate(cases, 1):
        kind, detail = classify(case, work)
        counts[kind] = counts.get(kind, 0) + 1
        rows.append((case.family, case.name, kind, detail))
        print(f"[{i}/{len(cases)}] {case.family:<10} {case.name:<48} {kind:<14} {detail}", flush=True)
    print("\n| cases | clean errors | accepted (correct) | silent results | data lost | raw tracebacks |")
    print("|---|---|---|---|---|---|")
    print(f"| {len(cases)} | {counts.get('clean error', 0)} | {counts.get('accepted', 0)} | "
          f"{counts.get('silent result', 0)} | {counts.get('data lost', 0)} | {counts.get('raw traceback', 0)} |")
    print(f"({time.time() - start:.0f} s)")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    bad = counts.get("silent result", 0) + counts.get("data lost", 0) + counts.get("raw traceback", 0)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
