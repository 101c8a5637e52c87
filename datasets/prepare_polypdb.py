#!/usr/bin/env python
"""Install PolypDB_INS (SiMaskFormer's polyp data) into the registered layout and check it. See :mod:`skinformer.data.preparation.polypdb`."""
import os
import sys

# runs from a checkout without an install
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from skinformer.data.preparation.polypdb import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
