"""Path handling through iopath, so checkpoints and configs can live behind URL handlers."""
from iopath.common.file_io import HTTPURLHandler, PathManager as _PathManagerCls

__all__ = ["PathManager"]

PathManager = _PathManagerCls()
PathManager.register_handler(HTTPURLHandler())
