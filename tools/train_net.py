#!/usr/bin/env python
"""Train or evaluate a skinformer model: see :mod:`skinformer.cli.train` (also installed as
``skinformer-train``)."""
import os
import sys

# runnable as a script from a source checkout without installing the package
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from skinformer.cli.train import main  # noqa: E402

if __name__ == "__main__":
    main()
