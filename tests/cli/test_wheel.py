"""``pip wheel .`` gives a working install: kernel sources, model-zoo configs and the console
commands are in the wheel, and the installed package finds them (not the checkout's copies)."""
import os
import shutil
import subprocess
import sys
import zipfile
from importlib.metadata import PathDistribution
from pathlib import Path

import pytest

from skinformer.ops import build

from test_console_scripts import COMMANDS

ROOT = Path(__file__).resolve().parents[2]
ZOO_CONFIG = "isic2018/semantic-segmentation/simaskformer_R50_bs16_steplr.yaml"


def _source_copy(dest: Path) -> Path:
    """What the build reads (setup.py, metadata files, the package, configs/), without build
    leftovers, so that building never writes into the checkout."""
    junk = shutil.ignore_patterns("__pycache__", "*.pyc", "*.so", "*.egg-info")
    dest.mkdir()
    for name in ("setup.py", "pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, dest / name)
    shutil.copytree(ROOT / "configs", dest / "configs", ignore=junk)
    shutil.copytree(ROOT / "skinformer", dest / "skinformer", ignore=junk)
    shutil.rmtree(dest / "skinformer" / "model_zoo" / "configs", ignore_errors=True)  # a stale build copy
    return dest


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wheel")
    src = _source_copy(tmp / "src")
    env = {k: v for k, v in os.environ.items() if k != "SKINFORMER_BUILD_OPS"}  # the pure-Python wheel
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                        "--no-cache-dir", "-w", str(tmp / "dist")], capture_output=True, text=True, timeout=900,
                       env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    # setup.py removes its copy of configs/ again: nothing stale stays in the source tree
    assert not (src / "skinformer" / "model_zoo" / "configs").exists()
    wheels = list((tmp / "dist").glob("skinformer-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.mark.slow
def test_wheel_ships_kernel_sources_configs_and_commands(wheel, tmp_path):
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        z.extractall(tmp_path / "site")
    for rel in build.SOURCES["cpu"] + build.SOURCES["cuda"] + build.HEADERS:
        assert f"skinformer/ops/{rel}" in names, rel
    assert {Path(n).suffix for n in names if n.startswith("skinformer/ops/csrc/")} == {".cpp", ".cu", ".h"}
    assert f"skinformer/model_zoo/configs/{ZOO_CONFIG}" in names
    for base in ("isic2018/semantic-segmentation/Base-ISIC-SemanticSegmentation.yaml", "common/simaskformer_R50.yaml"):
        assert f"skinformer/model_zoo/configs/{base}" in names, base  # the _BASE_ files of ZOO_CONFIG
    assert not any(n.startswith(("tests/", "tools/")) for n in names)
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    with zipfile.ZipFile(wheel) as z:
        assert "skinformer-predict = skinformer.cli.predict:main" in z.read(entry_points).decode()

    dist_info = next((tmp_path / "site").glob("skinformer-*.dist-info"))
    scripts = {ep.name: ep for ep in PathDistribution(dist_info).entry_points.select(group="console_scripts")}
    assert sorted(scripts) == sorted(COMMANDS)
    for name, ep in scripts.items():
        assert callable(ep.load()), name


@pytest.mark.slow
def test_installed_wheel_finds_its_sources_and_configs(wheel, tmp_path):
    """Unpacked away from the checkout (as pip installs it): the JIT build reads the shipped
    sources and the model zoo the shipped configs."""
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
    code = ("import sys; from skinformer.ops import build, load_kernel; from skinformer import model_zoo;"
            f"print('SOURCES', build.sources_root()); print('CONFIG', model_zoo.get_config_file({ZOO_CONFIG!r}));"
            "cfg = model_zoo.get_config(" + repr(ZOO_CONFIG) + "); print('ARCH', cfg.MODEL.META_ARCHITECTURE);"
            "s = load_kernel('cpu'); print('KERNEL', s.available, s.origin, s.reason)")
    env = {k: v for k, v in os.environ.items() if k not in ("SKINFORMER_OPS_SOURCES", "PYTHONPATH")}
    env["PYTHONPATH"] = str(site)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900, cwd=tmp_path,
                       env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = dict(line.split(" ", 1) for line in r.stdout.splitlines() if line.split(" ", 1)[0].isupper())
    assert Path(lines["SOURCES"]) == site / "skinformer" / "ops"
    assert Path(lines["CONFIG"]) == site / "skinformer" / "model_zoo" / "configs" / ZOO_CONFIG
    assert lines["ARCH"] == "SiMaskFormer"
    from torch.utils import cpp_extension

    from skinformer.ops import loader

    if loader.cxx_compiler() is not None and cpp_extension.is_ninja_available():
        assert lines["KERNEL"].startswith("True jit"), lines["KERNEL"]
