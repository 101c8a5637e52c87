from .catalog import DatasetCatalog, Metadata, MetadataCatalog, datasets_root
from . import transforms  # noqa: F401
from . import datasets  # noqa: F401  (declares the lazy built-in datasets; reads nothing)
from .build import TrainLoader, build_test_loader, build_train_loader, get_dataset_dicts
from .common import DatasetFromList
from .mappers import DATASET_MAPPER_REGISTRY, build_dataset_mapper
from .samplers import InferenceSampler, TrainingSampler
from .validation import validate_dataset, validate_first_images
