#!/usr/bin/env python
"""Mask annotation tool: ``python demo/annotate.py --images DIR [--labels DIR] --port N``.

The logic lives in :mod:`skinformer.demo.annotate`."""
import sys

from skinformer.demo.annotate import main

if __name__ == "__main__":
    main(sys.argv[1:])
