"""Built-in datasets. Importing this package only *declares* lazy providers
(see :func:`skinformer.data.catalog.register_lazy_provider`); nothing is read until a name is used.
"""
