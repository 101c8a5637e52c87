"""Built-in datasets. Importing this package only *declares* lazy providers
(see :func:`skinformer.data.catalog.register_lazy_provider`); nothing is read until a name is used.
"""
from skinformer.data.catalog import register_lazy_provider as _register_lazy_provider


def _provide_synthetic_lesion():
    from .synthetic import register_synthetic_lesion

    register_synthetic_lesion()


_register_lazy_provider(["synthetic_lesion_train", "synthetic_lesion_val"], _provide_synthetic_lesion)
from . import builtin as _builtin  # noqa: F401,E402  (declares the built-in dataset names, reads nothing)
