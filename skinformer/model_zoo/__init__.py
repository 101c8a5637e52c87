"""The shipped configs, as files: ``get_config_file("isic2018/semantic-segmentation/simaskformer_R50_bs16_steplr.yaml")``.

A wheel / ``pip install .`` carries them in ``skinformer/model_zoo/configs`` (``setup.py`` copies
the repository's ``configs/`` there at build time, ``_BASE_`` paths stay relative); a checkout or
an editable install reads the repository's ``configs/`` directly.
"""
import os
from pathlib import Path

__all__ = ["configs_root", "get_config_file", "get_config"]


def configs_root() -> Path:
    """The folder holding the shipped configs: a checkout's ``configs/`` (never a stale build
    copy), else the packaged copy of an installed wheel."""
    checkout = Path(__file__).resolve().parent.parent.parent / "configs"
    if checkout.is_dir() and (checkout.parent / "setup.py").is_file():
        return checkout
    return Path(__file__).resolve().parent / "configs"


def get_config_file(config_path: str) -> str:
    """Absolute path of a shipped config, given relative to ``configs/``.

    Raises:
        FileNotFoundError: naming the config and the folder searched.
    """
    root = configs_root()
    path = root / config_path
    if not path.is_file():
        raise FileNotFoundError(f"{config_path!r} is not a shipped config (looked in {root}); list them with "
                                f"`find {root} -name '*.yaml'`")
    return os.fspath(path)


def get_config(config_path: str):
    """``get_cfg()`` merged with the shipped config ``config_path`` (not frozen)."""
    from skinformer.config import get_cfg

    cfg = get_cfg()
    cfg.merge_from_file(get_config_file(config_path))
    return cfg
