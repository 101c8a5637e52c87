#!/usr/bin/env python
"""Feed the command-line programs bad input and print a table of what happens: see
:mod:`skinformer.cli.robustness_check`."""
import os
import sys

# runs from a checkout without an install
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from skinformer.cli.robustness_check import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
