"""Helpers shared by dataset registrations."""
import os

from skinformer.data.catalog import DATASETS_ENV, datasets_root

__all__ = ["DatasetNotFoundError", "require_path", "README_HINT"]

README_HINT = "datasets/README.md"


class DatasetNotFoundError(FileNotFoundError):
    """A dataset root or file that does not exist; the message says where it was looked for."""

    def __str__(self):
        return str(self.args[0]) if self.args else ""


def require_path(path: str, dataset_name: str, layout_hint: str = "") -> str:
    """Return ``path`` if it exists, else raise :class:`DatasetNotFoundError` naming the dataset,
    the path looked for, ``$SKINFORMER_DATASETS`` (and its current value) and ``datasets/README.md``.

    Args:
        path: file or folder the dataset needs.
        dataset_name: the registered name (e.g. "isic_sem_seg_train").
        layout_hint: the expected layout below the datasets root, e.g.
            ``"ISIC2018/ISIC2018_Task1-2_Training_Input/*.jpg"``.
    """
    if os.path.exists(path):
        return path
    env = os.environ.get(DATASETS_ENV)
    env_str = f"{DATASETS_ENV}={env!r}" if env is not None else f"{DATASETS_ENV} is not set (default ./datasets)"
    hint = f" Expected layout: {layout_hint}." if layout_hint else ""
    raise DatasetNotFoundError(
        f"Dataset '{dataset_name}': {os.path.abspath(path)} does not exist. Datasets are looked for under "
        f"the folder in the environment variable {DATASETS_ENV} ({env_str}; resolved root: "
        f"{os.path.abspath(datasets_root())}).{hint} See {README_HINT} for the expected layout of every dataset."
    )
