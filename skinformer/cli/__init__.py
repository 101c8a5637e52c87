"""Command-line programs of the package (``main(argv=None)`` each); ``tools/*.py`` and the
console commands installed by ``pip`` (``skinformer-predict``) call them."""
