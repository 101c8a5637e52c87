#!/usr/bin/env python
"""Check every image and mask of a registered dataset: see :mod:`skinformer.cli.validate` (also
installed as ``skinformer-validate``)."""
import sys

from skinformer.cli.validate import main

if __name__ == "__main__":
    sys.exit(main())
