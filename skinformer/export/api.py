"""Export a config + weights to ONNX or TorchScript and check the result against PyTorch.

Limits (also in the README):

* semantic outputs only (``{"sem_seg": K×H×W}``); instance outputs are refused;
* the network runs at a fixed square ``export_size`` (see :mod:`.wrapper`): images of any size
  are accepted, resized to it and the scores resized back, so for non-square images the result
  differs slightly from :class:`DefaultPredictor`, which keeps the aspect ratio;
* deformable attention runs as the ``grid_sample`` reference (no custom ops), batch size 1;
* the graph is traced: data-dependent Python control flow is frozen to the example's branch,
  which is why :func:`check_parity` runs inputs of other sizes and contents.
"""
import logging
import os
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np
import torch

from .wrapper import ExportableSegmentor, use_pytorch_deformable_attention

__all__ = ["EXPORT_FORMATS", "ExportError", "export_model", "check_parity", "build_exportable"]

logger = logging.getLogger(__name__)


class ExportError(RuntimeError):
    """The model cannot be exported as asked (the message says why)."""


def build_exportable(cfg, export_size: int = 0) -> ExportableSegmentor:
    """Model of ``cfg`` with ``MODEL.WEIGHTS`` (random init when empty) wrapped for export.

    ``export_size`` 0: ``INPUT.MIN_SIZE_TEST`` rounded up to the model's size divisibility."""
    from skinformer.checkpoint import DetectionCheckpointer
    from skinformer.modeling.meta_arch.build import build_model

    model = build_model(cfg).eval()
    if cfg.MODEL.WEIGHTS:
        DetectionCheckpointer(model, save_to_disk=False).load(cfg.MODEL.WEIGHTS, source="MODEL.WEIGHTS")
    else:
        logger.warning("MODEL.WEIGHTS is empty: exporting randomly initialised weights")
    n = use_pytorch_deformable_attention(model)
    if n:
        logger.info("Deformable attention: %d modules switched to the pure-PyTorch reference", n)
    div = max(int(getattr(model, "size_divisibility", 32) or 1), 1)
    size = export_size or int(cfg.INPUT.MIN_SIZE_TEST)
    if size <= 0:
        raise ExportError(f"export size must be > 0, got {size} (set --export-size or INPUT.MIN_SIZE_TEST)")
    size = (size + div - 1) // div * div
    wrapper = ExportableSegmentor(model, size).eval()
    with torch.no_grad():
        out = model([{"image": torch.zeros(3, size, size), "height": size, "width": size}])[0]
    if "sem_seg" not in out:
        raise ExportError(
            f"{cfg.MODEL.META_ARCHITECTURE} returns {sorted(out)}; only semantic outputs ('sem_seg') can be "
            "exported (for mask models set MODEL.<ARCH>.TEST.SEMANTIC_ON True)"
        )
    return wrapper


def _example(size: Tuple[int, int], seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (1, 3, *size), generator=g).float()


def _export_onnx(wrapper: ExportableSegmentor, example: torch.Tensor, output_dir: str) -> str:
    path = os.path.join(output_dir, "model.onnx")
    # the TorchScript-based exporter: it records the resize sizes from image.shape symbolically
    torch.onnx.export(
        wrapper, (example,), path, dynamo=False, opset_version=17,
        input_names=["image"], output_names=["sem_seg"],
        dynamic_axes={"image": {2: "height", 3: "width"}, "sem_seg": {2: "height", 3: "width"}},
    )
    wrapper.eval()  # the exporter may leave the module in training mode
    import onnx

    onnx.checker.check_model(onnx.load(path))
    return path


def _export_torchscript(wrapper: ExportableSegmentor, example: torch.Tensor, output_dir: str) -> str:
    path = os.path.join(output_dir, "model.ts")
    with torch.no_grad():
        traced = torch.jit.trace(wrapper, (example,), check_trace=False)
    traced.save(path)
    return path


def _run_onnx(path: str) -> Callable[[torch.Tensor], np.ndarray]:
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"image": x.numpy()})[0]


def _run_torchscript(path: str) -> Callable[[torch.Tensor], np.ndarray]:
    module = torch.jit.load(path, map_location="cpu")

    def run(x):
        with torch.no_grad():
            return module(x).numpy()

    return run


# format -> (export(wrapper, example, output_dir) -> path, loader(path) -> runner or None)
EXPORT_FORMATS: Dict[str, Tuple[Callable, Callable]] = {
    "onnx": (_export_onnx, _run_onnx),
    "torchscript": (_export_torchscript, _run_torchscript),
}


def check_parity(wrapper: ExportableSegmentor, fmt: str, path: str,
                 sizes: Sequence[Tuple[int, int]]) -> List[Dict]:
    """Run the exported file and the PyTorch wrapper on random images of ``sizes``.

    Returns one dict per size: ``size``, ``max_abs_diff`` of the scores, ``mask_agreement`` (fraction
    of pixels whose ``score > 0.5`` decision matches); empty when the runtime is not installed."""
    runner = EXPORT_FORMATS[fmt][1](path)
    if runner is None:
        return []
    rows = []
    for i, size in enumerate(sizes):
        x = _example(size, seed=100 + i)
        with torch.no_grad():
            ref = wrapper(x).numpy()
        got = runner(x)
        if got.shape != ref.shape:
            raise ExportError(f"{fmt} output for a {size} image has shape {got.shape}, PyTorch {ref.shape}")
        rows.append({"size": tuple(size), "max_abs_diff": float(np.abs(got - ref).max()),
                     "mask_agreement": float(((got > 0.5) == (ref > 0.5)).mean())})
    return rows


def export_model(cfg, fmt: str, output_dir: str, export_size: int = 0) -> Tuple[str, List[Dict]]:
    """Export ``cfg``'s model to ``output_dir`` as ``fmt`` and check parity on three image sizes.

    Returns ``(path, parity rows)`` (see :func:`check_parity`)."""
    if fmt not in EXPORT_FORMATS:
        raise ExportError(f"--format must be one of {sorted(EXPORT_FORMATS)}, got '{fmt}'")
    os.makedirs(output_dir, exist_ok=True)
    wrapper = build_exportable(cfg, export_size)
    s = wrapper.export_size
    logger.info("Exporting %s to %s at network size %dx%d", cfg.MODEL.META_ARCHITECTURE, fmt, s, s)
    path = EXPORT_FORMATS[fmt][0](wrapper, _example((s, s + s // 4), seed=0), output_dir)
    logger.info("Wrote %s", path)
    # sizes unlike the example's, including another aspect ratio, prove the size is dynamic
    sizes = [(s, s), (s * 3 // 4 + 1, s + s // 2), (s + s // 3, s // 2 + 3)]
    return path, check_parity(wrapper, fmt, path, sizes)
