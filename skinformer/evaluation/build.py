from skinformer.utils.registry import Registry

__all__ = ["EVALUATOR_REGISTRY", "build_evaluator"]

EVALUATOR_REGISTRY = Registry("EVALUATOR")
EVALUATOR_REGISTRY.__doc__ = """
Registry for dataset evaluators, keyed by a dataset's metadata ``evaluator_type``
(e.g. "sem_seg", "isic_task1", "isic_task2", "coco_instance").

Each entry is called as ``obj(cfg, dataset_name: str, output_dir: Optional[str])`` (config first, like
every other registry's entries) and returns a
:class:`DatasetEvaluator` (``reset`` / ``process(inputs, outputs)`` / ``evaluate() -> dict``).
"""


def build_evaluator(cfg, dataset_name: str, output_dir: str = None):
    """The evaluator named by ``dataset_name``'s metadata ``evaluator_type``, called
    ``(cfg, dataset_name, output_dir)``; ``KeyError`` when the metadata has none."""
    import skinformer.evaluation  # noqa: F401  (registers the built-in evaluators)
    from skinformer.data.catalog import MetadataCatalog

    meta = MetadataCatalog.get(dataset_name)
    etype = meta.get("evaluator_type", None)
    if etype is None:
        raise KeyError(f"Dataset '{dataset_name}' has no 'evaluator_type' in its metadata")
    where = f"metadata 'evaluator_type' of dataset '{dataset_name}'"
    evaluator = EVALUATOR_REGISTRY.get(etype, config_key=where)(cfg, dataset_name, output_dir)
    if cfg.TEST.PER_IMAGE.ENABLED and etype != "per_image":
        from .evaluator import DatasetEvaluators

        evaluator = DatasetEvaluators([evaluator, EVALUATOR_REGISTRY.get("per_image")(cfg, dataset_name, output_dir)])
    return evaluator
