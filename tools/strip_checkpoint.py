#!/usr/bin/env python
"""Keep only the model weights of a checkpoint (drop optimizer, scheduler, loader, RNG state).

    python tools/strip_checkpoint.py output/x/model_0009999.pth output/x/model_weights.pth

The result loads with ``MODEL.WEIGHTS`` like ``model_final.pth`` (which training already
writes weights-only); it cannot be resumed from.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from skinformer.checkpoint import CheckpointError, strip_checkpoint  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", help="checkpoint file (skinformer, detectron2, timm, Lightning, ...)")
    parser.add_argument("output", help="where to write the weights-only file")
    args = parser.parse_args(argv)
    try:
        info = strip_checkpoint(args.input, args.output)
    except (CheckpointError, FileNotFoundError, ValueError) as e:
        parser.exit(2, f"error: {e}\n")
    print(f"Wrote {args.output}: {info['num_weights']} weights, {info['dst_bytes'] / 2**20:.1f} MiB "
          f"(input {info['src_bytes'] / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
