#!/usr/bin/env python
"""Draw the block diagram of skinformer's SiMaskFormer pipeline: see :mod:`skinformer.cli.draw_architecture`."""
import sys

from skinformer.cli.draw_architecture import main

if __name__ == "__main__":
    main(sys.argv[1:])
