from .catalog import DatasetCatalog, Metadata, MetadataCatalog, datasets_root
