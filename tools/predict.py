#!/usr/bin/env python
"""Predict masks for a folder (or list) of images: see :mod:`skinformer.cli.predict`
(also installed as ``skinformer-predict``)."""
import sys

from skinformer.cli.predict import main

if __name__ == "__main__":
    sys.exit(main())
