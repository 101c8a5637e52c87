#!/usr/bin/env python
"""Evaluator cost per 1,000 images: see :mod:`skinformer.cli.benchmark_eval`."""
import os
import sys

# runs from a checkout without an install
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from skinformer.cli.benchmark_eval import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
