#!/usr/bin/env python
"""Split paired skin captures into the ``skin_<type>_{train,val,test}`` layout: see
:mod:`skinformer.cli.create_skin_dataset` and :mod:`skinformer.data.skin_dataset`."""
import sys

from skinformer.cli.create_skin_dataset import main

if __name__ == "__main__":
    sys.exit(main())
