#!/usr/bin/env python
"""Figures of datasets, predictions and training runs: see :mod:`skinformer.cli.plot` and
:mod:`skinformer.utils.plot`."""
import sys

from skinformer.cli.plot import main

if __name__ == "__main__":
    main(sys.argv[1:])
