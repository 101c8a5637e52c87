"""Export of semantic-segmentation models to ONNX and TorchScript (see :mod:`.api`)."""
from .api import EXPORT_FORMATS, ExportError, check_parity, export_model
from .wrapper import ExportableSegmentor

__all__ = ["EXPORT_FORMATS", "ExportError", "ExportableSegmentor", "check_parity", "export_model"]
