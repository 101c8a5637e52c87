#!/usr/bin/env python
"""Install an ISIC challenge download into the registered layout and check it. See :mod:`skinformer.data.preparation.isic`."""
import os
import sys

# runs from a checkout without an install
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from skinformer.data.preparation.isic import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
