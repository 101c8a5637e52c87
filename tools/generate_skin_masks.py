#!/usr/bin/env python
"""Derive binary skin masks from pairs of camera captures: see :mod:`skinformer.cli.generate_skin_masks`
and :mod:`skinformer.data.skin_masks`."""
import sys

from skinformer.cli.generate_skin_masks import main

if __name__ == "__main__":
    sys.exit(main())
