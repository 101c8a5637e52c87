#!/usr/bin/env python
"""Model and pipeline benchmarks (parameters, FLOPs, latency, train step, memory; ratios against smp's DeepLabV3+-R50): see :mod:`skinformer.cli.benchmark`."""
import os
import sys

# runs from a checkout without an install
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from skinformer.cli.benchmark import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
