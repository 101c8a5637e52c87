from skinformer.utils.registry import Registry

__all__ = ["DATASET_MAPPER_REGISTRY", "build_dataset_mapper"]

DATASET_MAPPER_REGISTRY = Registry("DATASET_MAPPER")
DATASET_MAPPER_REGISTRY.__doc__ = """
Registry for dataset mappers: callables that turn one dataset dict into model input.

Each entry is called as ``obj(cfg, is_train: bool)`` and returns a callable
``mapper(dataset_dict) -> dict`` (or ``None`` to skip an unreadable sample during training).
The training mapper name is ``cfg.INPUT.DATASET_MAPPER_NAME`` or, when that is empty, the
training dataset's metadata ``mapper`` (e.g. "SemanticMapper").
"""


def build_dataset_mapper(cfg, is_train: bool, name: str = None):
    """The dataset mapper ``name`` (default ``INPUT.DATASET_MAPPER_NAME``, else the one the dataset's
    metadata implies) built from ``cfg`` for training or inference."""
    import skinformer.data.mappers  # noqa: F401  (registers the built-in mappers)

    where = None
    if name is None:
        name, where = cfg.INPUT.DATASET_MAPPER_NAME, "INPUT.DATASET_MAPPER_NAME"
        if not name:
            from skinformer.data.catalog import MetadataCatalog

            dataset = cfg.DATASETS.TRAIN[0] if is_train else cfg.DATASETS.TEST[0]
            name = MetadataCatalog.get(dataset).get("mapper", "SemanticMapper")
            where = f"metadata 'mapper' of dataset '{dataset}'"
    return DATASET_MAPPER_REGISTRY.get(name, config_key=where)(cfg, is_train)
