"""Benchmark the evaluators: seconds to score 1,000 images (scoring must cost well
under the model's inference on the same images).

    python tools/benchmark_eval.py                       # isic_task1, isic_task2, coco_instance on CPU
    python tools/benchmark_eval.py --device cuda --tasks isic_task1
    python tools/benchmark_eval.py --model-config configs/x.yaml --model-images 20   # + model time, ratio

* ``isic_task1`` / ``isic_task2``: ``--num-images`` synthetic images of ``--width``×``--height``
  (default 1,000 at 1024×768) with random-blob ground truth written as PNG files to a temporary
  folder (one lesion mask per image, resp. one mask per attribute) and perturbed-blob score maps
  already on ``--device``. Timed: ``evaluator.process`` (which reads and decodes the ground-truth
  files, as in a real evaluation) + ``evaluate``; generating the data is not timed.
* ``coco_instance``: the Kvasir-SEG test split (``splits/test.txt``, 199 images; ground truth
  ``annotations/instances_derived_from_masks.json``) with predictions derived from the ground truth
  (shifted, dilated / eroded masks, random scores, some extra false positives). Timed: ``process``
  (RLE encoding) + ``evaluate`` (COCOeval segm + bbox); reported scaled to 1,000 images.
* ``--model-config``: builds the model with ``skinformer.modeling.build_model`` and times its
  inference on ``--model-images`` images of the same size (resized like the test mapper), reported
  per 1,000 images next to the evaluators' cost.
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from typing import Dict, List, Optional

import cv2
import numpy as np
import torch
from tabulate import tabulate

from skinformer.evaluation import COCOInstanceEvaluator, ISICTask1Evaluator, ISICTask2Evaluator
from skinformer.structures import BitMasks, Boxes, Instances

ATTRIBUTES = ["globules", "milia_like_cyst", "negative_network", "pigment_network", "streaks"]

def default_kvasir_root() -> str:
    """``<datasets root>/kvasir_seg`` (``$SKINFORMER_DATASETS``, see :func:`skinformer.data.catalog.datasets_root`)."""
    from skinformer.data.catalog import datasets_root

    return os.path.join(datasets_root(), "kvasir_seg")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def random_blobs(rng: np.random.Generator, h: int, w: int, n_min: int, n_max: int, scale: float) -> np.ndarray:
    """A bool mask with a few random filled ellipses (``scale`` = typical radius / image side)."""
    canvas = np.zeros((h, w), np.uint8)
    for _ in range(int(rng.integers(n_min, n_max + 1))):
        center = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        axes = (max(1, int(rng.uniform(0.3, 1.0) * scale * w)), max(1, int(rng.uniform(0.3, 1.0) * scale * h)))
        cv2.ellipse(canvas, center, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    return canvas.astype(bool)


def perturb(rng: np.random.Generator, mask: np.ndarray) -> np.ndarray:
    """Shift and dilate/erode a mask (a plausible imperfect prediction)."""
    h, w = mask.shape
    dy, dx = (int(v) for v in rng.integers(-max(1, h // 40), max(2, h // 40), size=2))
    m = np.roll(mask, (dy, dx), axis=(0, 1)).astype(np.uint8)
    k = int(rng.integers(1, 8))
    kernel = np.ones((2 * k + 1, 2 * k + 1), np.uint8)
    m = cv2.dilate(m, kernel) if rng.random() < 0.5 else cv2.erode(m, kernel)
    return m.astype(bool)


def scores_from(rng: np.random.Generator, masks: np.ndarray) -> torch.Tensor:
    """Probability-like scores (K×H×W float32) that threshold at 0.5 back to ``masks``."""
    noise = rng.random(masks.shape, dtype=np.float32) * 0.45
    return torch.from_numpy(np.where(masks, 0.55 + noise, noise).astype(np.float32))


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        import shutil

        shutil.copyfile(src, dst)


def _write_pool(folder: str, masks: List[np.ndarray], tag: str) -> List[str]:
    files = []
    for i, m in enumerate(masks):
        f = os.path.join(folder, f"pool_{tag}_{i}.png")
        cv2.imwrite(f, m.astype(np.uint8) * 255, [cv2.IMWRITE_PNG_COMPRESSION, 1])
        files.append(f)
    return files


def _time_loop(evaluator, inputs: List[dict], outputs_fn, device: torch.device, repeats: int) -> Dict[str, float]:
    """Median over ``repeats`` of process-loop and evaluate seconds."""
    proc, evals, cpu = [], [], []
    for _ in range(repeats):
        evaluator.reset()
        _sync(device)
        c0 = time.process_time()
        t0 = time.perf_counter()
        for i, inp in enumerate(inputs):
            evaluator.process([inp], [outputs_fn(i)])
        _sync(device)
        t1 = time.perf_counter()
        results = evaluator.evaluate()
        _sync(device)
        t2 = time.perf_counter()
        proc.append(t1 - t0)
        evals.append(t2 - t1)
        # CPU seconds of this process: on a shared machine wall time also counts other jobs' load
        cpu.append(time.process_time() - c0)
    return {"process_s": statistics.median(proc), "evaluate_s": statistics.median(evals),
            "cpu_s": statistics.median(cpu), "results": results}


def bench_isic_task1(args, device, workdir) -> Dict:
    rng = np.random.default_rng(0)
    h, w, pool = args.height, args.width, args.pool
    gts = [random_blobs(rng, h, w, 1, 2, 0.25) for _ in range(pool)]
    preds = [scores_from(rng, perturb(rng, g)[None]).to(device) for g in gts]
    pool_files = _write_pool(workdir, gts, "t1")
    inputs = []
    for i in range(args.num_images):
        f = os.path.join(workdir, f"ISIC_{i:07d}_segmentation.png")
        _link_or_copy(pool_files[i % pool], f)
        inputs.append({"file_name": f"ISIC_{i:07d}.jpg", "image_id": i, "height": h, "width": w, "sem_seg_file_name": f})
    ev = ISICTask1Evaluator(label_space={"classes": ["lesion"]}, device=str(device))
    t = _time_loop(ev, inputs, lambda i: {"sem_seg": preds[i % pool]}, device, args.repeats)
    t["gt_read_s"] = _time_gt_reads([d["sem_seg_file_name"] for d in inputs])
    t.update(images=len(inputs), headline=("threshold_jaccard", t["results"]["isic_task1"]["threshold_jaccard"]))
    return t


def bench_isic_task2(args, device, workdir) -> Dict:
    rng = np.random.default_rng(1)
    h, w, pool = args.height, args.width, max(2, args.pool // 2)
    k = len(ATTRIBUTES)
    gts = [np.stack([random_blobs(rng, h, w, 0, 6, 0.05) for _ in range(k)]) for _ in range(pool)]
    preds = [scores_from(rng, np.stack([perturb(rng, a) for a in g])).to(device) for g in gts]
    pool_files = [_write_pool(workdir, list(g), f"t2_{j}") for j, g in enumerate(gts)]
    inputs = []
    for i in range(args.num_images):
        files = []
        for a, src in zip(ATTRIBUTES, pool_files[i % pool]):
            f = os.path.join(workdir, f"ISIC_{i:07d}_attribute_{a}.png")
            _link_or_copy(src, f)
            files.append(f)
        inputs.append({"file_name": f"ISIC_{i:07d}.jpg", "image_id": i, "height": h, "width": w, "label_file_names": files})
    ev = ISICTask2Evaluator(classes=ATTRIBUTES, device=str(device))
    t = _time_loop(ev, inputs, lambda i: {"sem_seg": preds[i % pool]}, device, args.repeats)
    t["gt_read_s"] = _time_gt_reads([f for d in inputs for f in d["label_file_names"]])
    t.update(images=len(inputs), headline=("jaccard_micro", t["results"]["isic_task2"]["jaccard_micro"]))
    return t


def _time_gt_reads(files: List[str]) -> float:
    """Seconds to decode the ground-truth files alone (the I/O share of ``process``)."""
    from skinformer.data import mask_io

    t0 = time.perf_counter()
    for f in files:
        mask_io.read_binary_mask(f)
    return time.perf_counter() - t0


def bench_coco(args, device, workdir) -> Optional[Dict]:
    from pycocotools.coco import COCO

    root = args.kvasir_root or default_kvasir_root()
    json_file = os.path.join(root, "annotations", "instances_derived_from_masks.json")
    split = os.path.join(root, "splits", "test.txt")
    if not (os.path.isfile(json_file) and os.path.isfile(split)):
        print(f"[coco_instance] skipped: Kvasir-SEG not found under {root}", file=sys.stderr)
        return None
    with open(split) as f:
        names = [line.strip() for line in f if line.strip()]
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(json_file)
    by_name = {img["file_name"]: img for img in coco.dataset["images"]}
    rng = np.random.default_rng(2)
    inputs, outputs = [], []
    for name in names:
        img = by_name[name]
        h, w = img["height"], img["width"]
        masks = [perturb(rng, coco.annToMask(a).astype(bool)) for a in coco.loadAnns(coco.getAnnIds(imgIds=img["id"]))]
        if rng.random() < 0.3:  # an occasional false positive
            masks.append(random_blobs(rng, h, w, 1, 1, 0.08))
        m = torch.from_numpy(np.stack(masks)) if masks else torch.zeros(0, h, w, dtype=torch.bool)
        inst = Instances((h, w))
        inst.pred_masks = m.to(device)
        inst.pred_boxes = BitMasks(m).get_bounding_boxes().to(device) if len(m) else Boxes(torch.zeros(0, 4, device=device))
        inst.scores = torch.from_numpy(rng.uniform(0.3, 1.0, size=len(m)).astype(np.float32)).to(device)
        inst.pred_classes = torch.zeros(len(m), dtype=torch.int64, device=device)
        inputs.append({"file_name": os.path.join(root, "images", name), "image_id": img["id"], "height": h, "width": w})
        outputs.append({"instances": inst})
    ev = COCOInstanceEvaluator(classes=["polyp"], json_file=json_file, thing_dataset_id_to_contiguous_id={1: 0})
    ev._load_gt()  # reading the json is a one-off cost, cached across evaluations; keep it out of the timing
    t = _time_loop(ev, inputs, lambda i: outputs[i], device, args.repeats)
    t.update(images=len(inputs), headline=("segm AP", t["results"]["segm"]["AP"]))
    return t


def bench_model(args, device) -> Optional[Dict]:
    """Seconds per image of the configured model on ``--model-images`` images of the benchmark size."""
    if not args.model_config:
        return None
    import torch.nn.functional as F

    from skinformer.config import add_mask_former_config, get_cfg
    from skinformer.modeling import build_model

    cfg = get_cfg()
    add_mask_former_config(cfg)
    cfg.merge_from_file(args.model_config)
    cfg.merge_from_list(list(args.opts))
    cfg.MODEL.DEVICE = str(device)
    model = build_model(cfg)
    model.eval()
    h, w = args.height, args.width
    # the test mapper's resize: shortest edge MIN_SIZE_TEST, longest at most MAX_SIZE_TEST
    short = cfg.INPUT.MIN_SIZE_TEST
    scale = min(short / min(h, w), cfg.INPUT.MAX_SIZE_TEST / max(h, w))
    nh, nw = int(h * scale + 0.5), int(w * scale + 0.5)
    rng = torch.Generator().manual_seed(0)
    img = torch.randint(0, 256, (1, 3, h, w), generator=rng, dtype=torch.uint8).float()
    image = F.interpolate(img, size=(nh, nw), mode="bilinear", align_corners=False)[0].round().clamp(0, 255).to(torch.uint8)
    batch = [{"image": image, "height": h, "width": w, "file_name": "bench.jpg", "image_id": 0}]
    times = []
    with torch.no_grad():
        for i in range(args.model_images + 2):
            _sync(device)
            t0 = time.perf_counter()
            model(batch)
            _sync(device)
            if i >= 2:  # warm-up
                times.append(time.perf_counter() - t0)
    return {"s_per_image": statistics.median(times), "images": len(times), "input": f"{nw}×{nh}"}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", nargs="+", default=["isic_task1", "isic_task2", "coco_instance"],
                   choices=["isic_task1", "isic_task2", "coco_instance"])
    p.add_argument("--num-images", type=int, default=1000)
    p.add_argument("--height", type=int, default=768)
    p.add_argument("--width", type=int, default=1024)
    p.add_argument("--pool", type=int, default=16, help="distinct synthetic masks cycled over the images")
    p.add_argument("--repeats", type=int, default=1, help="repeat the timed loop; the median is reported")
    p.add_argument("--device", default="cpu", help="where the predictions live (and the statistics accumulate)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--kvasir-root", default=None, help="default: $SKINFORMER_DATASETS/kvasir_seg")
    p.add_argument("--model-config", default=None, help="also time this model's inference (build_model)")
    p.add_argument("--model-images", type=int, default=10)
    p.add_argument("--output", default=None, help="write the figures as JSON")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides for --model-config (KEY VALUE ...)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    benches = {"isic_task1": bench_isic_task1, "isic_task2": bench_isic_task2, "coco_instance": bench_coco}
    rows, report = [], {"device": str(device), "threads": torch.get_num_threads(), "tasks": {}}
    with tempfile.TemporaryDirectory(prefix="skinformer_bench_eval_") as workdir:
        for task in args.tasks:
            r = benches[task](args, device, workdir)
            if r is None:
                continue
            n = r["images"]
            per_1000 = (r["process_s"] + r["evaluate_s"]) * 1000.0 / n
            gt_read = r.get("gt_read_s")
            rows.append([task, n, f"{args.width}×{args.height}" if task != "coco_instance" else "original",
                         r["process_s"], r["evaluate_s"], per_1000, r["cpu_s"] * 1000.0 / n,
                         gt_read * 1000.0 / n if gt_read is not None else float("nan"),
                         f"{r['headline'][0]}={r['headline'][1]:.4f}"])
            report["tasks"][task] = {k: v for k, v in r.items() if k != "results"}
            report["tasks"][task]["s_per_1000_images"] = per_1000
    print(f"device {device}, {torch.get_num_threads()} threads")
    print(tabulate(rows, headers=["task", "images", "size", "process s", "evaluate s", "s / 1000 img", "CPU s / 1000 img",
                                  "of which GT decode s / 1000", "check"], tablefmt="pipe", floatfmt=".3f"))
    model = bench_model(args, device)
    if model is not None:
        per_1000 = model["s_per_image"] * 1000.0
        print(f"model ({args.model_config}, input {model['input']}): {per_1000:.1f} s / 1000 images "
              f"(median of {model['images']})")
        for task, r in report["tasks"].items():
            print(f"  {task}: evaluation / inference = {r['s_per_1000_images'] / per_1000:.3f}")
        report["model"] = model
    if args.output:
        with open(args.output, "w") as f:
            json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
