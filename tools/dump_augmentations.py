#!/usr/bin/env python
"""Write N augmented image / mask pairs of the training pipeline to a folder.

Example::

    python tools/dump_augmentations.py --config-file configs/original_recipes/deeplabv3plus_R50_isic2017_augmented.yaml \
        --num 16 --output output/aug_dump INPUT.GRID_DISTORTION.PROB 1.0
"""
import argparse
import sys

from skinformer.config import get_cfg
from skinformer.data.augmentation_dump import dump_augmented_samples
from skinformer.engine.defaults import register_config_datasets
from skinformer.utils.logger import setup_logger


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", required=True)
    p.add_argument("--num", type=int, default=8, help="number of samples to write")
    p.add_argument("--output", required=True, help="folder for <i>_image.png / <i>_mask*.png")
    p.add_argument("--dataset", default=None, help="dataset name (default: DATASETS.TRAIN[0])")
    p.add_argument("--seed", type=int, default=0, help="per-sample seeds are seed + i")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    args = p.parse_args(argv)
    setup_logger()
    cfg = get_cfg()
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    register_config_datasets(cfg)
    written = dump_augmented_samples(cfg, args.num, args.output, args.dataset, args.seed)
    print(f"{len(written)} samples written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
