#!/usr/bin/env python
"""Deformable-attention op benchmark: every backend against the grid_sample reference: see :mod:`skinformer.cli.benchmark_ops`."""
import os
import sys

# runs from a checkout without an install
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from skinformer.cli.benchmark_ops import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
