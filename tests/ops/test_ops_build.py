"""Building, loading and diagnosing the compiled MSDA kernels (skinformer.ops)."""
import glob
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import torch

from skinformer import ops
from skinformer.ops import build, loader

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def fresh_loader(monkeypatch):
    """No remembered kernels; the real cache entries come back after the test."""
    monkeypatch.setattr(loader, "_cache", {})
    return monkeypatch


def test_sources_are_found_inside_the_package():
    root = build.sources_root()
    assert root == REPO / "skinformer" / "ops"
    for kind in build.KINDS:
        for rel in build.SOURCES[kind] + build.HEADERS:
            assert (root / rel).is_file(), rel


def test_no_deprecated_aten_apis():
    for path in (REPO / "skinformer" / "ops" / "csrc").rglob("*"):
        if path.suffix in (".cpp", ".cu", ".h", ".cuh"):
            text = path.read_text()
            for bad in (".type()", ".data<", "AT_DISPATCH_FLOATING_TYPES(", "THCudaCheck"):
                assert bad not in text, f"{path.name} uses {bad}"


def test_build_extensions_for_setup_py(monkeypatch):
    monkeypatch.delenv("FORCE_CUDA", raising=False)
    ext_modules, cmdclass = ops.build_extensions()
    names = [ext.name for ext in ext_modules]
    assert names[0] == "skinformer._C_msda_cpu"
    assert ("skinformer._C_msda_cuda" in names) == (torch.cuda.is_available() and torch.version.cuda is not None
                                                   and loader.nvcc_path() is not None)
    for ext in ext_modules:
        for source in ext.sources:
            assert not os.path.isabs(source) and (REPO / source).is_file(), source
    assert "build_ext" in cmdclass


def test_cache_root_env(monkeypatch, tmp_path):
    monkeypatch.setenv("SKINFORMER_OPS_CACHE", str(tmp_path))
    assert build.cache_root() == tmp_path
    monkeypatch.delenv("SKINFORMER_OPS_CACHE")
    assert build.cache_root() == Path.home() / ".cache" / "skinformer" / "ops"


def test_cpu_kernel_is_cached_per_torch_version_and_sources():
    status = ops.load_kernel("cpu")
    if not status.available:
        pytest.skip(f"cpu kernel unavailable: {status.reason}")
    assert status.module.device == "cpu"
    if status.origin.startswith("jit"):
        build_dir = Path(status.origin.split(" ", 1)[1])
        assert build_dir.name == "cpu"
        assert build_dir.parent.name.startswith(torch.__version__ + "-")
        assert list(build_dir.glob("*.so")) or list(build_dir.glob("*.pyd"))


def _broken_sources(root: Path) -> Path:
    for kind in build.KINDS:
        for rel in build.SOURCES[kind] + build.HEADERS:
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text('#include "skinformer_no_such_header.h"\n')
    return root


def test_build_error_is_reported_with_its_first_lines(fresh_loader, tmp_path):
    if loader.cxx_compiler() is None:
        pytest.skip("no C++ compiler")
    fresh_loader.setenv("SKINFORMER_OPS_SOURCES", str(_broken_sources(tmp_path / "ops")))
    fresh_loader.setenv("SKINFORMER_OPS_CACHE", str(tmp_path / "cache"))
    fresh_loader.setitem(build.PREBUILT_MODULES, "cpu", "skinformer._no_such_prebuilt")
    status = ops.load_kernel("cpu")
    assert not status.available
    assert "build failed" in status.reason and "skinformer_no_such_header.h" in status.reason
    assert ops.load_kernel("cpu") is status  # remembered: no second build
    with pytest.raises(ops.KernelUnavailableError, match="skinformer_no_such_header.h"):
        ops.get_kernel("cpu")


def test_missing_sources_and_compiler_are_explained(fresh_loader, tmp_path):
    fresh_loader.setitem(build.PREBUILT_MODULES, "cpu", "skinformer._no_such_prebuilt")
    fresh_loader.setenv("SKINFORMER_OPS_SOURCES", str(tmp_path))
    status = ops.load_kernel("cpu")
    assert not status.available and status.reason.startswith("sources not found")
    assert "SKINFORMER_OPS_SOURCES" in status.hint
    ops.reset()
    fresh_loader.delenv("SKINFORMER_OPS_SOURCES")
    fresh_loader.setenv("CXX", str(tmp_path / "no-compiler"))
    status = ops.load_kernel("cpu")
    assert not status.available and "no C++ compiler" in status.reason and "CXX" in status.hint
    with pytest.raises(ValueError, match="kernel kind"):
        ops.load_kernel("tpu")


def test_cuda_kernel_unavailable_reason_without_gpu(fresh_loader):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    status = ops.load_kernel("cuda")
    assert not status.available
    assert "CPU-only build" in status.reason or "no CUDA GPU" in status.reason
    assert status.hint


def test_prebuilt_module_is_preferred(fresh_loader, tmp_path):
    (tmp_path / "fake_msda_prebuilt.py").write_text("device = 'cpu'\ndef forward(*a): pass\n"
                                                    "def backward(*a): pass\n")
    (tmp_path / "broken_msda_prebuilt.py").write_text("raise ImportError('undefined symbol: _ZN3at')\n")
    fresh_loader.syspath_prepend(str(tmp_path))
    fresh_loader.setitem(build.PREBUILT_MODULES, "cpu", "fake_msda_prebuilt")
    status = ops.load_kernel("cpu")
    assert status.available and status.origin == "prebuilt fake_msda_prebuilt"
    # a prebuilt module that fails to load (ABI mismatch) is replaced by the JIT build
    ops.reset()
    fresh_loader.setitem(build.PREBUILT_MODULES, "cpu", "broken_msda_prebuilt")
    fresh_loader.setenv("SKINFORMER_OPS_SOURCES", str(tmp_path / "none"))  # keep it cheap
    status = ops.load_kernel("cpu")
    assert any("undefined symbol" in note for note in status.notes)
    assert not status.available and "sources not found" in status.reason


@pytest.mark.slow
def test_diagnostics_cli():
    result = subprocess.run([sys.executable, "-m", "skinformer.ops"], capture_output=True, text=True,
                            timeout=600, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for text in ("torch", "C++ compiler", "CUDA_HOME", "GPU", "pytorch  ok"):
        assert text in out, out
    if loader.cxx_compiler() is not None:
        assert "cpu      ok" in out, out
    assert "cuda     ok" in out or "fix:" in out, out


def _torch_cxx_std() -> str:
    import torch.utils.cpp_extension as cpp_extension

    return "c++20" if "-std=c++20" in Path(cpp_extension.__file__).read_text() else "c++17"


def _cuda_header_dirs():
    """torch's include dirs plus pip-installed CUDA library headers (nvidia-*), which a minimal
    toolkit may lack (e.g. cusparse.h); the latter go after the toolkit's own headers."""
    import torch.utils.cpp_extension as cpp_extension

    torch_dirs = cpp_extension.include_paths()  # torch only: nvcc adds its own toolkit headers
    extra = sorted(glob.glob(os.path.join(sysconfig.get_paths()["purelib"], "nvidia", "*", "include")))
    return torch_dirs, extra


@pytest.mark.slow
def test_cuda_source_compiles(tmp_path):
    """Compile-only check of the CUDA sources whenever nvcc is on PATH (no GPU needed), so a
    broken .cu fails CI. Deliberately bypasses cpp_extension's CUDA version check."""
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc not on PATH")
    torch_dirs, extra = _cuda_header_dirs()
    if not (Path(torch_dirs[0]) / "ATen" / "cuda" / "CUDAContext.h").is_file():
        pytest.skip("this torch has no CUDA headers")
    std = _torch_cxx_std()
    csrc = REPO / "skinformer" / "ops" / "csrc"
    cmd = [nvcc, "-c", f"-std={std}", "-O3", "--expt-relaxed-constexpr",
           "-D__CUDA_NO_HALF_OPERATORS__", "-D__CUDA_NO_HALF_CONVERSIONS__",
           "-D__CUDA_NO_BFLOAT16_CONVERSIONS__", "-D__CUDA_NO_HALF2_OPERATORS__",
           "-gencode", "arch=compute_80,code=sm_80",
           *[f"-I{d}" for d in torch_dirs], f"-I{sysconfig.get_paths()['include']}", f"-I{csrc}",
           *[arg for d in extra for arg in ("-Xcompiler", f"-idirafter,{d}")],
           str(csrc / "cuda" / "ms_deform_attn_cuda.cu"), "-o", str(tmp_path / "msda_cuda.o")]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    missing = re.search(r"fatal error: ([^:\s]+): No such file", result.stderr)
    if result.returncode != 0 and missing:
        header = missing.group(1)
        # a toolkit / CUDA library header missing here is an environment issue, not a bug
        if not header.startswith(("ATen", "c10", "torch", "..", "ms_deform")):
            pytest.skip(f"CUDA header {header} not found: install the CUDA toolkit's headers")
    assert result.returncode == 0, result.stderr[-4000:]
    assert (tmp_path / "msda_cuda.o").stat().st_size > 0


def _two_checkouts(tmp_path):
    roots = []
    for name in ("checkout_a", "checkout_b"):
        root = tmp_path / name / "ops"
        shutil.copytree(REPO / "skinformer" / "ops" / "csrc", root / "csrc")
        roots.append(root)
    return roots


def test_jit_build_is_keyed_by_what_the_build_files_hold(fresh_loader, tmp_path, caplog):
    """Two checkouts with the same sources: the compiled paths live in the keyed cache dir, the
    first load announces a build with its expected duration, the second one reuses it."""
    if loader.cxx_compiler() is None:
        pytest.skip("no C++ compiler")
    from torch.utils import cpp_extension

    if not cpp_extension.is_ninja_available():
        pytest.skip("ninja is not installed")
    calls = []

    def fake_load(name, sources, extra_include_paths, build_directory, **kw):
        calls.append((name, list(sources), list(extra_include_paths), build_directory))
        (Path(build_directory) / f"{name}.so").write_bytes(b"")
        return "module"

    fresh_loader.setattr(cpp_extension, "load", fake_load)
    fresh_loader.setitem(build.PREBUILT_MODULES, "cpu", "skinformer._no_such_prebuilt")
    fresh_loader.setenv("SKINFORMER_OPS_CACHE", str(tmp_path / "cache"))
    a, b = _two_checkouts(tmp_path)
    logs = []
    for root in (a, b):
        ops.reset()
        fresh_loader.setenv("SKINFORMER_OPS_SOURCES", str(root))
        caplog.clear()
        with caplog.at_level("INFO", logger="skinformer.ops.loader"):
            assert ops.load_kernel("cpu").available
        logs.append(caplog.text)
    assert calls[0] == calls[1]  # identical arguments -> identical build.ninja
    name, sources, includes, build_dir = calls[0]
    for path in sources + includes:
        assert Path(path).is_relative_to(build_dir) and str(tmp_path / "checkout_") not in path
    assert "building the cpu deformable-attention kernel once" in logs[0] and "1-2 minutes" in logs[0]
    assert "building" not in logs[1] and "loading the cached cpu kernel" in logs[1]
    # A change of the sources is a new key, hence a new directory (and a new build).
    (b / "csrc" / "ms_deform_attn.h").write_text((b / "csrc" / "ms_deform_attn.h").read_text() + "\n// changed\n")
    ops.reset()
    assert ops.load_kernel("cpu").available
    assert calls[2][3] != build_dir


@pytest.mark.slow
def test_two_checkouts_share_one_real_build(tmp_path):
    """Real ninja builds: loading from checkout b after checkout a rebuilds nothing."""
    if loader.cxx_compiler() is None:
        pytest.skip("no C++ compiler")
    a, b = _two_checkouts(tmp_path)
    code = ("import logging, sys; logging.basicConfig(level=logging.INFO, stream=sys.stdout);"
            "from skinformer import ops; s = ops.load_kernel('cpu'); print('ORIGIN', s.origin, s.reason)")
    outs = []
    for root in (a, b, a):
        env = dict(os.environ, SKINFORMER_OPS_SOURCES=str(root), SKINFORMER_OPS_CACHE=str(tmp_path / "cache"))
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900, cwd=REPO,
                           env=env)
        assert "ORIGIN jit" in r.stdout, r.stdout + r.stderr
        outs.append(r.stdout)
        if len(outs) == 1:
            so = next(Path(r.stdout.split("ORIGIN jit ")[1].split()[0]).glob("*.so"))
            mtime = so.stat().st_mtime_ns
    assert "building the cpu" in outs[0]
    assert all("building the cpu" not in o for o in outs[1:])
    assert so.stat().st_mtime_ns == mtime
