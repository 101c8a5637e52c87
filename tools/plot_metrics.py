#!/usr/bin/env python
"""Plot training and evaluation curves from one or more runs' ``metrics.json``: see
:mod:`skinformer.cli.plot_metrics` and :mod:`skinformer.utils.plot`."""
import sys

from skinformer.cli.plot_metrics import main

if __name__ == "__main__":
    main(sys.argv[1:])
