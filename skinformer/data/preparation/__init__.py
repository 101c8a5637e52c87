"""Dataset preparation: install an official download into the registered layout under
``$SKINFORMER_DATASETS`` and check every split through the built-in loaders. One module per
dataset family, each with a ``main(argv)`` run by ``datasets/prepare_<name>.py``."""
