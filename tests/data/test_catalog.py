import os
import subprocess
import sys

import pytest

from skinformer.data.catalog import DatasetCatalog, MetadataCatalog, register_lazy_provider, reset_lazy_resolution
from skinformer.data.datasets.utils import DatasetNotFoundError, require_path

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_require_path_error_names_env_var_path_and_readme(tmp_path, monkeypatch):
    monkeypatch.setenv("SKINFORMER_DATASETS", str(tmp_path))
    missing = str(tmp_path / "ISIC2018" / "train")
    with pytest.raises(DatasetNotFoundError) as e:
        require_path(missing, "isic_sem_seg_train", "ISIC2018/<split>/*.jpg")
    msg = str(e.value)
    assert "isic_sem_seg_train" in msg and missing in msg and "SKINFORMER_DATASETS" in msg
    assert str(tmp_path) in msg and "ISIC2018/<split>/*.jpg" in msg and "datasets/README.md" in msg
    assert isinstance(e.value, FileNotFoundError)
    assert require_path(str(tmp_path), "x") == str(tmp_path)


def test_require_path_when_env_unset(monkeypatch, tmp_path):
    monkeypatch.delenv("SKINFORMER_DATASETS", raising=False)
    with pytest.raises(DatasetNotFoundError, match="SKINFORMER_DATASETS is not set"):
        require_path(str(tmp_path / "nope"), "d")


def test_lazy_provider_resolves_on_first_lookup():
    calls = []

    def provider():
        calls.append(1)
        DatasetCatalog.register("lazy_unit_a", lambda: [{"file_name": "x"}])
        MetadataCatalog.get("lazy_unit_a").set(classes=["lesion"])

    register_lazy_provider(["lazy_unit_a"], provider)
    try:
        assert calls == []
        assert MetadataCatalog.get("lazy_unit_a").classes == ["lesion"]
        assert DatasetCatalog.get("lazy_unit_a") == [{"file_name": "x"}]
        assert calls == [1]
    finally:
        DatasetCatalog.remove("lazy_unit_a")
        MetadataCatalog.remove("lazy_unit_a")


def test_reset_lazy_resolution_runs_the_provider_again(monkeypatch):
    roots = []

    def provider():
        roots.append(os.environ["SKINFORMER_DATASETS"])
        DatasetCatalog.register("lazy_unit_b", lambda: [{"file_name": roots[-1]}])
        MetadataCatalog.get("lazy_unit_b").set(root=roots[-1])

    register_lazy_provider(["lazy_unit_b"], provider)
    try:
        monkeypatch.setenv("SKINFORMER_DATASETS", "/first")
        assert DatasetCatalog.get("lazy_unit_b") == [{"file_name": "/first"}]
        monkeypatch.setenv("SKINFORMER_DATASETS", "/second")
        assert MetadataCatalog.get("lazy_unit_b").root == "/first"  # resolved once per process ...
        assert reset_lazy_resolution(["lazy_unit_b"]) == ["lazy_unit_b"]
        assert "lazy_unit_b" not in DatasetCatalog and "lazy_unit_b" not in MetadataCatalog
        assert MetadataCatalog.get("lazy_unit_b").root == "/second"  # ... until reset
        assert "lazy_unit_b" in reset_lazy_resolution()  # None: everything providers registered
        assert DatasetCatalog.get("lazy_unit_b") == [{"file_name": "/second"}] and len(roots) == 3
    finally:
        reset_lazy_resolution(["lazy_unit_b"])


def test_unknown_dataset_lists_names():
    with pytest.raises(KeyError, match="synthetic_lesion_train"):
        DatasetCatalog.get("no_such_dataset_xyz")


def test_import_reads_nothing_and_synthetic_resolves_in_fresh_process(tmp_path):
    cache = tmp_path / "cache"
    code = (
        "import os, sys\n"
        "import skinformer.data as D\n"
        # importing only declares the providers: nothing generated yet
        "assert not os.path.exists(sys.argv[1]), 'import created files'\n"
        "d = D.DatasetCatalog.get('synthetic_lesion_val')\n"
        "m = D.MetadataCatalog.get('synthetic_lesion_val')\n"
        "print(len(d), m.classes, m.evaluator_type, os.path.isfile(d[0]['file_name']))\n"
    )
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
               SKINFORMER_CACHE=str(cache))
    r = subprocess.run([sys.executable, "-c", code, str(cache)], capture_output=True, text=True, env=env,
                       timeout=300, cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().split("\n")[-1] == "16 ['lesion'] isic_task1 True"
    assert len(list((cache / "synthetic_lesion").glob("*/val/images/*.png"))) == 16
