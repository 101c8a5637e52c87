#!/usr/bin/env python
"""Install Kvasir-SEG into the registered layout, write a seeded split and (optionally) instances. See :mod:`skinformer.data.preparation.kvasir`."""
import os
import sys

# runs from a checkout without an install
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from skinformer.data.preparation.kvasir import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
