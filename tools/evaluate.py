#!/usr/bin/env python
"""Score a folder of predicted masks against a folder of ground-truth masks: see
:mod:`skinformer.cli.evaluate` and :mod:`skinformer.evaluation.folder` (also installed as
``skinformer-evaluate``)."""
import sys

from skinformer.cli.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
