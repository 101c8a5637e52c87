#!/usr/bin/env python
"""Export a trained model to ONNX or TorchScript: see :mod:`skinformer.cli.export_model`."""
import sys

from skinformer.cli.export_model import main

if __name__ == "__main__":
    main(sys.argv[1:])
