"""Train or evaluate a skinformer model (detectron2's ``tools/train_net.py``).

    skinformer-train --config-file configs/quickstart/per_pixel_r18_synthetic.yaml \\
        --num-gpus 1 --resume SOLVER.IMS_PER_BATCH 4 SOLVER.MAX_ITER 200 OUTPUT_DIR out/x

    python tools/train_net.py --config-file CFG --eval-only MODEL.WEIGHTS out/x/model_final.pth

OUTPUT_DIR then holds ``config.yaml`` (the merged config), ``log.txt``, ``metrics.json`` (one
line per logged iteration, evaluation results included), ``model_*.pth`` / ``model_final.pth``,
``last_checkpoint`` and ``vis/*.png`` (TEST.NUM_VIS overlays of predictions on test images).
``--num-gpus N`` on a machine without CUDA (or with MODEL.DEVICE cpu) runs N gloo CPU processes.
"""
import logging
from typing import Optional, Sequence

from tabulate import tabulate

from skinformer.checkpoint import DetectionCheckpointer
from skinformer.engine import (
    DefaultTrainer,
    check_cfg_against_metadata,
    default_argument_parser,
    default_setup,
    launch,
    setup_cfg,
)
from skinformer.utils import comm

__all__ = ["Trainer", "setup", "train", "main"]


class Trainer(DefaultTrainer):
    """Project-level trainer: override ``build_*`` classmethods here to customise the recipe."""


def setup(args):
    """Config from file + command-line overrides, then per-process set-up (logs, seed, datasets)."""
    cfg = setup_cfg(args)
    default_setup(cfg, args)
    return cfg


def _final_table(results) -> None:
    """Print every metric of the final evaluation as one small table per task."""
    if not results or not comm.is_main_process():
        return
    from skinformer.engine.hooks import flatten_results_dict

    rows = [(k, f"{float(v):.4f}") for k, v in flatten_results_dict(results).items()]
    logging.getLogger("skinformer").info("Final metrics:\n%s", tabulate(rows, headers=["metric", "value"],
                                                                       tablefmt="pipe"))


def train(args):
    """The work of one process (``launch`` runs it in each): train, or evaluate with ``--eval-only``;
    returns the final evaluation results."""
    cfg = setup(args)

    if args.eval_only:
        check_cfg_against_metadata(cfg, cfg.DATASETS.TEST)
        model = Trainer.build_model(cfg)
        checkpointer = DetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR)
        # --resume: the last checkpoint of OUTPUT_DIR if there is one, else MODEL.WEIGHTS; either
        # must fit the model, or the metrics would come from a partly random model
        checkpointer.resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume, strict_weights=True,
                                    allow_partial=cfg.MODEL.ALLOW_PARTIAL_WEIGHTS)
        res = Trainer.test(cfg, model)
        _final_table(res)
        if comm.is_main_process():
            Trainer.visualize(cfg, model)
        comm.synchronize()
        return res

    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    res = trainer.train()
    _final_table(res)
    if comm.is_main_process():
        Trainer.visualize(trainer.cfg, trainer.model)
    comm.synchronize()
    return res


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Parse the command line and run :func:`train` on ``--num-gpus × --num-machines`` processes."""
    args = default_argument_parser().parse_args(argv)
    print("Command Line Args:", args)
    device = None
    if args.num_gpus * args.num_machines > 1:
        # the parent only needs MODEL.DEVICE to pick NCCL (CUDA) or gloo (CPU) processes
        device = setup_cfg(args).MODEL.DEVICE
    launch(
        train,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
        device=device,
    )


if __name__ == "__main__":
    main()
