#!/usr/bin/env python
"""Build the ``skin_{acne,hemo,mela}_*`` datasets from raw skin-analysis captures and check them. See :mod:`skinformer.data.preparation.skin`."""
import os
import sys

# runs from a checkout without an install
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from skinformer.data.preparation.skin import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
