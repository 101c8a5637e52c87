#!/usr/bin/env python
"""Segmentation web demo: ``python demo/app.py --config-file CFG --port N MODEL.WEIGHTS W``.

The logic lives in :mod:`skinformer.demo.app`."""
import sys

from skinformer.demo.app import main

if __name__ == "__main__":
    main(sys.argv[1:])
