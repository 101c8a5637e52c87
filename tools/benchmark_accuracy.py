#!/usr/bin/env python
"""Train skinformer configs and smp peers for the same wall budget and print one table of ISIC
Task 1 scores: see :mod:`skinformer.cli.benchmark_accuracy`."""
import os
import sys

# runs from a checkout without an install
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from skinformer.cli.benchmark_accuracy import main  # noqa: E402

if __name__ == "__main__":
    main()
