#!/usr/bin/env python
"""Install the PH2 dermoscopy dataset (https://www.fc.up.pt/addi/ph2%20database.html) and check it. See :mod:`skinformer.data.preparation.ph2`."""
import os
import sys

# runs from a checkout without an install
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from skinformer.data.preparation.ph2 import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
