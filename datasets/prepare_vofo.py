#!/usr/bin/env python
"""Install Seg-VoFo (vocal folds; private, from Cho Ray Hospital via SiMaskFormer's authors) and check it. See :mod:`skinformer.data.preparation.vofo`."""
import os
import sys

# runs from a checkout without an install
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from skinformer.data.preparation.vofo import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
