"""Dataset mappers (dataset dict -> model input). Importing this package registers them in
``DATASET_MAPPER_REGISTRY``; see :func:`build_dataset_mapper`."""
from .build import DATASET_MAPPER_REGISTRY, build_dataset_mapper
from .semantic import SemanticMapper
from .inference import InferenceMapper
from .multilabel import MultiLabelMapper
from .instance import InstanceMapper
