"""Model and pipeline benchmarks (README "Benchmarks"). Prints tables; every ratio is measured in the same run.

Sections:

* ``--section models`` (default): for each model config — parameters, FLOPs (fvcore, 512², batch 1;
  one multiply-add = one flop, fvcore's convention, plus handles for attention and deformable attention),
  inference latency at 512² (batch 1, median after warm-up), training step time at batch 4 × 256²
  (forward + backward + optimizer step, median) and peak memory of each, with the ratio against the
  baseline (the first config: a per-pixel DeepLabV3+ R50) and, when segmentation_models_pytorch is
  installed (``pip install -e .[benchmark]``), against smp's ``DeepLabV3Plus("resnet50")`` timed in the
  same process (and its FLOPs counted the same way: a time ratio close to the FLOP ratio says the
  model already runs at smp's arithmetic rate). Each model is measured in its own
  subprocess per phase so peak RSS (CPU) is not polluted by the other models. A config that cannot
  be built is reported as ``unavailable: <reason>``.
* ``--section pipeline``: training iteration time and data-loading time of the quick-start config
  (its train loader, model and optimizer), and ``inference_on_dataset``'s data / model / evaluator
  split on the validation set; the evaluator must cost < 10 % of the model time.

Usage::

    python tools/benchmark.py                                 # models, CPU, 2 threads
    python tools/benchmark.py --section pipeline --iters 20
    python tools/benchmark.py --section all --device cuda
    python tools/benchmark.py --configs a.yaml b.yaml --iters 5

Machines are noisy: quote medians and ratios, not absolute times.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import traceback
import warnings
from typing import Dict, Tuple

# the folder holding the ``skinformer`` package: put on the workers' PYTHONPATH, so they import this
# same copy from a checkout without an install
_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BASELINE_CONFIG = "configs/baselines/deeplabv3plus_R50_isic.yaml"
DEFAULT_MODEL_CONFIGS = [
    BASELINE_CONFIG,
    "configs/isic2018/semantic-segmentation/simaskformer_R50_bs16_steplr.yaml",
    "configs/isic2018/semantic-segmentation/maskformer2_R50_bs16_steplr.yaml",
]
PIPELINE_CONFIG = "configs/quickstart/per_pixel_r18_synthetic.yaml"
PHASES = ("static", "infer", "train", "mem_infer", "mem_train")
# Ops fvcore leaves out of FLOP counts by design (cheap elementwise work).
_ELEMENTWISE = {"mul", "add", "sub", "div", "rsqrt", "sqrt", "where", "pad", "masked_fill", "exp", "log", "neg",
                "sigmoid", "softmax", "relu", "gelu", "clamp", "pow", "abs", "floor", "ceil", "round", "eq", "gt",
                "lt", "ge", "le", "ne", "fill", "zero", "copy", "mean", "sum", "max", "min", "cumsum", "rsub",
                "tanh", "sin", "cos", "reciprocal", "log_softmax", "silu", "hardtanh", "hardsigmoid", "hardswish",
                # reductions, shape and pooling ops: cheap as well
                "amax", "amin", "any", "all", "prod", "view_as", "meshgrid", "repeat", "max_pool2d", "topk"}


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------
def _short_error(e: BaseException) -> str:
    msg = str(e).strip().splitlines()
    msg = msg[0] if msg else ""
    return f"{type(e).__name__}: {msg}"[:160]


def _config_path(config_file: str) -> str:
    """A config path as given (absolute, or relative to the working directory), else a shipped
    config named as in a checkout (``configs/<path>``, see :mod:`skinformer.model_zoo`)."""
    if os.path.isabs(config_file) or os.path.isfile(config_file):
        return os.path.abspath(config_file)
    from skinformer.model_zoo import configs_root

    shipped = os.path.join(os.fspath(configs_root()), config_file[len("configs/"):] if config_file.startswith(
        "configs/") else config_file)
    return shipped if os.path.isfile(shipped) else os.path.abspath(config_file)


def _load_cfg(config_file: str, device: str, opts=()):
    from skinformer.config import get_cfg

    cfg = get_cfg()
    cfg.merge_from_file(_config_path(config_file))
    cfg.merge_from_list(list(opts))
    cfg.MODEL.DEVICE = device
    cfg.MODEL.WEIGHTS = ""  # architecture only: random weights are enough for cost figures
    return cfg


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _current_rss_mb() -> float:
    # /proc is Linux-only; elsewhere fall back to ru_maxrss (an upper bound).
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20
    except OSError:
        return _max_rss_mb()


def _max_rss_mb() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 2 ** 20 if sys.platform == "darwin" else r / 1024  # bytes on macOS, KiB on Linux


def _lesion_dict(size: int, seed: int, num_classes: int, with_targets: bool):
    """A mapper-style dict of a synthetic lesion image (uint8 3×S×S, sem_seg, instances)."""
    import numpy as np
    import torch

    rng = np.random.default_rng(seed)
    try:
        from skinformer.data.datasets.synthetic import make_lesion_sample

        image, mask = make_lesion_sample(rng, size)
    except Exception:  # the data package is not importable: an ellipse on noise will do
        yy, xx = np.mgrid[:size, :size]
        mask = ((yy - size / 2) / (size / 4)) ** 2 + ((xx - size / 2) / (size / 3)) ** 2 <= 1
        image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    d = {"image": torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).contiguous(),
         "height": size, "width": size, "file_name": f"synthetic_{seed}.png", "image_id": seed}
    if with_targets:
        mask_t = torch.from_numpy(mask.astype(bool))
        # classes 0..K-1, K = background-not-a-class (binary lesion data: K = 1)
        d["sem_seg"] = torch.where(mask_t, 0, num_classes).long()
        try:
            from skinformer.structures import BitMasks, Boxes, Instances

            inst = Instances((size, size))
            inst.gt_classes = torch.zeros(1, dtype=torch.int64)
            masks = mask_t[None]
            inst.gt_masks = masks
            inst.gt_boxes = BitMasks(masks).get_bounding_boxes()
            if not isinstance(inst.gt_boxes, Boxes):
                inst.gt_boxes = Boxes(inst.gt_boxes)
            d["instances"] = inst
        except Exception:
            pass
    return d


def _flatten_tensors(obj, out):
    import torch

    if isinstance(obj, torch.Tensor):
        out.append(obj)
    elif isinstance(obj, dict):
        for v in obj.values():
            _flatten_tensors(v, out)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _flatten_tensors(v, out)
    elif hasattr(obj, "get_fields"):  # Instances
        _flatten_tensors(obj.get_fields(), out)
    elif hasattr(obj, "tensor"):  # Boxes
        out.append(obj.tensor)
    return out


def _build(cfg):
    from skinformer.modeling import build_model

    return build_model(cfg)


def _paired_times(fns, iters: int, warmup: int, device: str):
    """Time several step functions interleaved (ABAB..., order alternating each round) so that a
    change of machine load hits all of them alike. Returns one list of seconds per function."""
    for fn in fns:
        for _ in range(warmup):
            fn()
    _sync(device)
    times = [[] for _ in fns]
    for i in range(iters):
        order = list(range(len(fns)))
        if i % 2:
            order.reverse()
        for j in order:
            t0 = time.perf_counter()
            fns[j]()
            _sync(device)
            times[j].append(time.perf_counter() - t0)
    return times


def _shape(v):
    from fvcore.nn.jit_handles import get_shape

    return get_shape(v)


def _sdpa_flop(inputs, outputs):
    # q: (..., Lq, E), k: (..., Lk, E), v: (..., Lk, Ev): Q·K^T and A·V multiply-adds.
    q, k, v = (_shape(x) for x in inputs[:3])
    batch = 1
    for d in q[:-2]:
        batch *= d
    return batch * q[-2] * k[-2] * (q[-1] + v[-1])


def _baddbmm_flop(inputs, outputs):
    b, n, m = _shape(inputs[1])
    p = _shape(inputs[2])[-1]
    return b * n * m * p


def _msda_flop(inputs, outputs):
    # value N×S×M×D, attention weights N×Lq×M×L×P: per sampled point and channel 4 bilinear
    # corners + 1 attention weight multiply-add.
    shapes = [_shape(x) for x in inputs]
    value = next(s for s in shapes if s is not None and len(s) == 4)
    attn = [s for s in shapes if s is not None and len(s) == 5][-1]
    n = 1
    for d in attn:
        n *= d
    return n * value[-1] * 5


def _grid_sampler_flop(inputs, outputs):
    # bilinear: 4 multiply-adds per output value
    n = 1
    for d in _shape(outputs[0]):
        n *= d
    return 4 * n


# Ops fvcore has no handle for but which carry real work in mask-transformer models.
_EXTRA_FLOP_HANDLES = {
    "aten::scaled_dot_product_attention": _sdpa_flop,
    "aten::baddbmm": _baddbmm_flop,
    "prim::PythonOp._MSDAFunction": _msda_flop,
    "aten::grid_sampler": _grid_sampler_flop,
}


def _count_flops(module, inputs) -> Tuple[float, Dict[str, int]]:
    """fvcore's FLOP count of ``module(*inputs)`` (one multiply-add = one flop) with the handles of
    :data:`_EXTRA_FLOP_HANDLES`, and the ops it could not count (name -> calls)."""
    import torch
    from fvcore.nn import FlopCountAnalysis

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        flops = FlopCountAnalysis(module, inputs).set_op_handle(**_EXTRA_FLOP_HANDLES)
        flops.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
        total = float(flops.total())
        unsupported = flops.unsupported_ops()
    return total, {k: int(v) for k, v in sorted(unsupported.items(), key=lambda kv: -kv[1])}


def _phase_static(cfg, args):
    import torch

    model = _build(cfg).eval()
    res = {"params": sum(p.numel() for p in model.parameters()),
           "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad)}
    sample = _lesion_dict(512, 0, cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES, with_targets=False)

    class _TensorIO(torch.nn.Module):
        """Tensor in / tensors out, so that the jit tracer under fvcore can follow the model."""

        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, image):
            d = dict(sample)
            d["image"] = image
            return tuple(_flatten_tensors(self.m([d]), []))

    try:
        res["flops"], res["flops_unsupported"] = _count_flops(_TensorIO(model), (sample["image"].to(cfg.MODEL.DEVICE),))
    except Exception as e:
        res["flops_error"] = _short_error(e)
    # The same count of smp's network on the same 512² image, once per run (in the baseline's
    # worker): a latency ratio near the FLOP ratio means the model runs at smp's arithmetic rate.
    smp_model = _smp_model(cfg.MODEL.DEVICE) if not _against_baseline(args) else None
    if smp_model is not None:
        try:
            image = sample["image"][None].float().to(cfg.MODEL.DEVICE)
            res["flops_smp"], _ = _count_flops(smp_model.eval(), (image,))
        except Exception as e:
            res["flops_smp_error"] = _short_error(e)
    return res


def _infer_step(cfg):
    import torch

    model = _build(cfg).eval()
    batch = [_lesion_dict(512, 0, cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES, with_targets=False)]

    def step():
        with torch.no_grad():
            model(batch)

    return step


def _train_step(cfg):
    from skinformer.solver import build_optimizer

    model = _build(cfg).train()
    optimizer = build_optimizer(cfg, model)
    batch = [_lesion_dict(256, i, cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES, with_targets=True) for i in range(4)]

    def step():
        losses = model(batch)
        loss = sum(losses.values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def _smp_model(device: str):
    """segmentation_models_pytorch's ``DeepLabV3Plus("resnet50")`` (random weights, 1 class), the
    external reference of every timing; None when smp is not installed (the ``bench`` extra)."""
    try:
        import segmentation_models_pytorch as smp
    except ImportError:
        return None
    return smp.DeepLabV3Plus("resnet50", encoder_weights=None, classes=1).to(device)


def _smp_infer_step(device: str):
    import torch

    model = _smp_model(device)
    if model is None:
        return None
    model.eval()
    x = _lesion_dict(512, 0, 1, with_targets=False)["image"][None].float().to(device)

    def step():
        with torch.no_grad():
            model(x).sigmoid()

    return step


def _smp_train_step(device: str):
    import torch
    import torch.nn.functional as F

    model = _smp_model(device)
    if model is None:
        return None
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batch = [_lesion_dict(256, i, 1, with_targets=True) for i in range(4)]
    x = torch.stack([d["image"] for d in batch]).float().to(device)
    y = torch.stack([(d["sem_seg"] == 0) for d in batch])[:, None].float().to(device)

    def step():
        logits = model(x)
        probs = logits.sigmoid()
        dice = 1 - (2 * (probs * y).sum() + 1) / (probs.sum() + y.sum() + 1)
        loss = F.binary_cross_entropy_with_logits(logits, y) + dice  # the usual smp recipe: BCE + Dice
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


_SMP_STEPS = {"latency": _smp_infer_step, "train_step": _smp_train_step}


def _against_baseline(args) -> bool:
    """Whether this worker measures a model other than the baseline (``args.baseline_config``)."""
    return bool(args.baseline_config) and os.path.abspath(args.baseline_config) != os.path.abspath(args.worker_config)


def _timed_phase(make_step, key, cfg, args):
    """Median step time of the model and, interleaved in the same process, of the baseline and of
    smp's DeepLabV3+-R50 (when installed); each ratio is the median of per-round ratios (robust
    to load drifting during the run)."""
    device = cfg.MODEL.DEVICE
    fns = [make_step(cfg)]
    with_base = _against_baseline(args)
    if with_base:
        fns.append(make_step(_load_cfg(args.baseline_config, device, args.opts)))
    smp_step = _SMP_STEPS[key](device)
    if smp_step is not None:
        fns.append(smp_step)
    times = _paired_times(fns, args.iters, max(args.warmup, 1), device)
    res = {f"{key}_s": statistics.median(times[0]), f"{key}_all_s": times[0]}
    if with_base:
        res[f"{key}_base_s"] = statistics.median(times[1])
        res[f"{key}_ratio"] = statistics.median(a / b for a, b in zip(times[0], times[1]))
    if smp_step is not None:
        res[f"{key}_smp_s"] = statistics.median(times[-1])
        res[f"{key}_smp_ratio"] = statistics.median(a / b for a, b in zip(times[0], times[-1]))
    return res


def _phase_infer(cfg, args):
    return _timed_phase(_infer_step, "latency", cfg, args)


def _phase_train(cfg, args):
    return _timed_phase(_train_step, "train_step", cfg, args)


def _memory_phase(make_step, key, cfg, args):
    """Peak memory of two steps of the model alone in this process (CPU: rise of the peak RSS over
    the RSS after building; CUDA: max_memory_allocated over the allocation after building)."""
    import torch

    device = cfg.MODEL.DEVICE
    step = make_step(cfg)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    rss0 = _current_rss_mb()
    for _ in range(2):
        step()
    _sync(device)
    if device.startswith("cuda"):
        return {key: (torch.cuda.max_memory_allocated() - base) / 2 ** 20}
    return {key: _max_rss_mb() - rss0}


def _phase_mem_infer(cfg, args):
    return _memory_phase(_infer_step, "infer_peak_mb", cfg, args)


def _phase_mem_train(cfg, args):
    return _memory_phase(_train_step, "train_peak_mb", cfg, args)


_PHASE_FNS = {"static": _phase_static, "infer": _phase_infer, "train": _phase_train,
              "mem_infer": _phase_mem_infer, "mem_train": _phase_mem_train}


def _worker(args) -> None:
    import torch

    if args.device == "cpu":
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    try:
        cfg = _load_cfg(args.worker_config, args.device, args.opts)
        out = {"ok": True, **_PHASE_FNS[args.worker_phase](cfg, args)}
    except Exception as e:
        out = {"ok": False, "error": _short_error(e), "traceback": traceback.format_exc()[-2000:]}
    print("@@RESULT@@" + json.dumps(out), flush=True)


def _run_phase(config: str, phase: str, args) -> dict:
    cmd = [sys.executable, "-m", "skinformer.cli.benchmark", "--worker-config", _config_path(config), "--worker-phase", phase,
           "--device", args.device, "--iters", str(args.iters), "--warmup", str(args.warmup),
           "--threads", str(args.threads), "--baseline-config", _config_path(args.baseline_config) if args.baseline_config else ""]
    if args.opts:
        cmd += ["--opts", *args.opts]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_PARENT, env.get("PYTHONPATH", "")) if p)
    if args.device == "cpu":
        # Also bound the OpenMP pool that torch.set_num_threads may not cover (e.g. a custom op).
        env.setdefault("OMP_NUM_THREADS", str(args.threads))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"timed out after {args.timeout}s"}
    for line in proc.stdout.splitlines():
        if line.startswith("@@RESULT@@"):
            return json.loads(line[len("@@RESULT@@"):])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {"ok": False, "error": f"worker exited with {proc.returncode}: {' | '.join(tail)[:200]}"}


# ------------------------------------------------------------------------------------------
# sections
# ------------------------------------------------------------------------------------------
def _fmt(v, unit_scale=1.0, fmt="{:.1f}"):
    return "-" if v is None else fmt.format(v * unit_scale)


def _ratio(v, ref):
    if v is None or ref is None or ref == 0:
        return "-"
    return f"{v / ref:.2f}x"


def section_models(args) -> None:
    configs = args.configs or DEFAULT_MODEL_CONFIGS
    # The first config is the baseline every ratio refers to; timings of each model are taken
    # interleaved with the baseline's in the same process.
    args.baseline_config = configs[0]
    print(f"\n== Models: device={args.device}, threads={args.threads if args.device == 'cpu' else '-'}, "
          f"latency at 512² batch 1 and train step at 4×256² (median of {args.iters} after {args.warmup} warm-up)")
    print(f"   baseline (ratios): {configs[0]}")
    rows = []
    for config in configs:
        name = os.path.splitext(os.path.basename(config))[0]
        if not os.path.isfile(_config_path(config)):
            rows.append((name, {"unavailable": f"config file {config} does not exist"}))
            continue
        merged = {}
        for phase in args.phases:
            t0 = time.perf_counter()
            res = _run_phase(config, phase, args)
            if not res.get("ok"):
                merged["unavailable"] = f"{phase}: {res.get('error')}"
                if args.verbose and res.get("traceback"):
                    print(res["traceback"], file=sys.stderr)
                break
            merged.update(res)
            print(f"   {name}: {phase} done in {time.perf_counter() - t0:.0f}s", flush=True)
        rows.append((name, merged))

    ref = rows[0][1] if rows and "unavailable" not in rows[0][1] else {}
    cols = [("params (M)", "params", 1e-6, "{:.1f}"), ("GFLOPs@512", "flops", 1e-9, "{:.1f}"),
            ("latency@512 (ms)", "latency_s", 1e3, "{:.0f}"), ("infer peak (MB)", "infer_peak_mb", 1, "{:.0f}"),
            ("train step 4×256² (ms)", "train_step_s", 1e3, "{:.0f}"), ("train peak (MB)", "train_peak_mb", 1, "{:.0f}")]
    header = ["model"] + [c[0] for c in cols]
    table = []
    for name, r in rows:
        if "unavailable" in r:
            table.append([name, f"unavailable: {r['unavailable']}"])
            continue
        line = [name]
        for _, key, scale, fmt in cols:
            v = r.get(key)
            if key == "flops" and v is None and "flops_error" in r:
                line.append(f"n/a ({r.get('flops_error', '?')[:40]})")
                continue
            cell = _fmt(v, scale, fmt)
            if ref and r is not ref and v is not None:
                # timings: the paired (interleaved) ratio; sizes and memory: plain ratio
                paired = r.get(key[:-2] + "_ratio") if key.endswith("_s") else None
                cell += f" ({paired:.2f}x)" if paired is not None else f" ({_ratio(v, ref.get(key))})"
            line.append(cell)
        table.append(line)
    _print_table(header, table)
    def smp_cells(r, key):
        if f"{key}_smp_ratio" not in r:
            return ["-", "-"]
        return [f"{r[f'{key}_smp_s'] * 1e3:.0f}", f"{r[f'{key}_smp_ratio']:.2f}x"]

    smp_flops = next((r["flops_smp"] for _, r in rows if "flops_smp" in r), None)

    def smp_flops_cells(r):
        if smp_flops is None or "flops" not in r:
            return ["-", "-"]
        return [f"{smp_flops * 1e-9:.1f}", f"{r['flops'] / smp_flops:.2f}x"]

    smp_rows = [[name] + smp_flops_cells(r) + smp_cells(r, "latency") + smp_cells(r, "train_step")
                for name, r in rows
                if (smp_flops is not None and "flops" in r) or "latency_smp_ratio" in r or "train_step_smp_ratio" in r]
    if smp_rows:
        print("\n   against segmentation_models_pytorch DeepLabV3Plus('resnet50') (FLOPs counted once; times measured "
              "in each model's process):")
        _print_table(["model", "smp GFLOPs@512", "FLOPs ratio", "smp latency@512 (ms)", "latency ratio",
                      "smp train step (ms)", "train ratio"], smp_rows)
    elif {"static", "infer", "train"} & set(args.phases):
        print("   (install segmentation_models_pytorch, `pip install -e .[benchmark]`, for ratios against smp's "
              "DeepLabV3Plus('resnet50'))")
    for name, r in rows:
        unsupported = r.get("flops_unsupported") or {}
        # fvcore deliberately leaves elementwise ops out; name only the ones that may matter.
        heavy = {k: v for k, v in unsupported.items() if k.split("::")[-1].rstrip("_") not in _ELEMENTWISE}
        if heavy:
            ops = ", ".join(f"{k}×{v}" for k, v in list(heavy.items())[:8])
            print(f"   note: {name}: FLOPs exclude non-elementwise ops fvcore cannot count: {ops}")
    print("   time ratios = median over rounds of model/baseline step times measured alternately in one process")
    if args.device == "cpu":
        print("   peak memory (CPU) = rise of the process's peak RSS over its RSS after building the model")
    else:
        print("   peak memory (CUDA) = torch.cuda.max_memory_allocated above the allocation after building")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({n: r for n, r in rows}, f, indent=1)


def _print_table(header, rows) -> None:
    full = [r for r in rows if not (len(r) == 2 and len(header) > 2)]  # "unavailable" rows span the table
    widths = [max(len(str(r[i])) if i < len(r) else 0 for r in [header] + full) for i in range(len(header))]
    print("   " + " | ".join(str(h).ljust(w) for h, w in zip(header, widths)))
    print("   " + "-+-".join("-" * w for w in widths))
    for r in rows:
        if len(r) == 2 and len(header) > 2 and str(r[1]).startswith("unavailable"):
            print("   " + str(r[0]).ljust(widths[0]) + " | " + r[1])
        else:
            print("   " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)))


def section_pipeline(args) -> None:
    import torch

    if args.device == "cpu":
        torch.set_num_threads(args.threads)
    print(f"\n== Pipeline: {args.pipeline_config} on {args.device} ({args.iters} timed training iterations)")
    try:
        cfg = _load_cfg(args.pipeline_config, args.device, args.opts)
        from skinformer.data.build import build_test_loader, build_train_loader
        from skinformer.evaluation import build_evaluator, inference_on_dataset
        from skinformer.solver import build_optimizer
    except Exception as e:
        print(f"   unavailable: {_short_error(e)}")
        return
    torch.manual_seed(0)
    # --- training iterations -----------------------------------------------------------------
    try:
        model = _build(cfg).train()
        optimizer = build_optimizer(cfg, model)
        loader = build_train_loader(cfg)
        it = iter(loader)
        data_t, step_t = [], []
        for i in range(args.iters + args.warmup):
            t0 = time.perf_counter()
            batch = next(it)
            t1 = time.perf_counter()
            losses = model(batch)
            loss = sum(losses.values())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            _sync(args.device)
            t2 = time.perf_counter()
            if i >= args.warmup:
                data_t.append(t1 - t0)
                step_t.append(t2 - t1)
        d, s = statistics.median(data_t), statistics.median(step_t)
        print(f"   train: batch {cfg.SOLVER.IMS_PER_BATCH}, {loader.num_workers} loader worker(s)")
        _print_table(["", "median (ms)", "mean (ms)", "share of iteration"], [
            ["data wait", f"{d * 1e3:.1f}", f"{statistics.mean(data_t) * 1e3:.1f}", f"{d / (d + s):.1%}"],
            ["step (fwd+bwd+opt)", f"{s * 1e3:.1f}", f"{statistics.mean(step_t) * 1e3:.1f}", f"{s / (d + s):.1%}"],
            ["iteration", f"{(d + s) * 1e3:.1f}", "", ""],
        ])
        est = (d + s) * cfg.SOLVER.MAX_ITER
        print(f"   => {cfg.SOLVER.MAX_ITER} iterations ≈ {est / 60:.1f} min at this rate")
        del it, loader
    except Exception as e:
        print(f"   train: unavailable: {_short_error(e)}")
        if args.verbose:
            traceback.print_exc()
        model = None
    # --- inference_on_dataset ------------------------------------------------------------------
    try:
        import tempfile

        if model is None:
            model = _build(cfg)
        from skinformer.data.build import get_dataset_dicts

        for name in cfg.DATASETS.TEST:
            # Repeat the (small) set so enough images are timed after the warm-up; batch 1 as in TEST.
            dicts = get_dataset_dicts(name) * args.eval_repeats
            loader = build_test_loader(cfg, dicts, batch_size=1)
            with tempfile.TemporaryDirectory() as tmp:
                evaluator = build_evaluator(cfg, name, tmp)
                timings = {}
                inference_on_dataset(model, loader, evaluator, timings=timings)
            n = timings.get("num_timed_images", 0)
            rows = []
            for key in ("data", "model", "evaluator"):
                v = timings.get(f"{key}_s_per_image")
                rows.append([f"{key} (per image)", "-" if v is None else f"{v * 1e3:.2f}"])
            ev_final = timings.get("evaluate_s", 0.0)
            rows.append(["evaluate() (once, total)", f"{ev_final * 1e3:.1f}"])
            print(f"   inference_on_dataset on {name} x{args.eval_repeats}: {timings.get('num_images')} images, "
                  f"batch 1 ({n} timed after warm-up)")
            _print_table(["", "ms"], rows)
            m, e = timings.get("model_s_per_image"), timings.get("evaluator_s_per_image")
            if m and e is not None:
                share = (e + ev_final / max(timings.get("num_images", 1), 1)) / m
                verdict = "OK" if share < 0.10 else "TOO SLOW"
                print(f"   evaluator share of model time (process + evaluate per image): {share:.1%}  "
                      f"[{verdict}: must be < 10%]")
    except Exception as e:
        print(f"   inference: unavailable: {_short_error(e)}")
        if args.verbose:
            traceback.print_exc()


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--section", choices=["models", "pipeline", "all"], default="models")
    p.add_argument("--configs", nargs="+", default=None,
                   help=f"model configs; the first is the ratio baseline (default: {DEFAULT_MODEL_CONFIGS})")
    p.add_argument("--pipeline-config", default=PIPELINE_CONFIG)
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    p.add_argument("--iters", type=int, default=5, help="timed iterations (medians are reported)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (CPU runs)")
    p.add_argument("--phases", nargs="+", choices=PHASES, default=list(PHASES), help="models section phases")
    p.add_argument("--eval-repeats", type=int, default=4, help="pipeline: passes over the validation set")
    p.add_argument("--timeout", type=int, default=1800, help="seconds per model and phase")
    p.add_argument("--json", default="", help="also write the models table as JSON here")
    p.add_argument("--verbose", action="store_true")
    p.add_argument("--opts", nargs=argparse.REMAINDER, default=[], help="config overrides KEY VALUE ...")
    # internal: one (config, phase) measurement in a subprocess
    p.add_argument("--worker-config", help=argparse.SUPPRESS)
    p.add_argument("--worker-phase", choices=PHASES, help=argparse.SUPPRESS)
    p.add_argument("--baseline-config", default="", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            p.error("--device cuda requested but torch.cuda.is_available() is False")
    if args.worker_config:
        _worker(args)
        return
    import logging

    logging.basicConfig(level=logging.WARNING)
    if args.section in ("models", "all"):
        section_models(args)
    if args.section in ("pipeline", "all"):
        section_pipeline(args)


if __name__ == "__main__":
    main()
