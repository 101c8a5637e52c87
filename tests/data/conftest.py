"""Fixtures shared by the data tests."""
import pytest

from skinformer.data.catalog import reset_lazy_resolution
from skinformer.data.datasets.builtin import BUILTIN_FAMILIES


@pytest.fixture
def use_root(monkeypatch):
    """``use_root(family, root)``: point ``SKINFORMER_DATASETS`` at ``root`` and make the built-in
    ``family`` resolve afresh there (registrations are process-global); its names are forgotten
    again when the test ends."""
    used = []

    def _use(family, root):
        monkeypatch.setenv("SKINFORMER_DATASETS", str(root))
        names = BUILTIN_FAMILIES[family][1]()
        reset_lazy_resolution(names)
        used.extend(names)

    yield _use
    reset_lazy_resolution(used)
