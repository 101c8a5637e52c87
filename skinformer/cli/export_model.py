"""Export a trained model to ONNX or TorchScript (detectron2's ``tools/deploy/export_model.py``).

    python tools/export_model.py --config-file output/run/config.yaml --format onnx \
        --output output/export MODEL.WEIGHTS output/run/model_final.pth

Writes ``OUTPUT/model.onnx`` or ``OUTPUT/model.ts``: input ``image`` 1×3×H×W float32 (0..255, the
config's INPUT.FORMAT channel order, any H and W), output ``sem_seg`` 1×K×H×W scores. Prints the
parity check against PyTorch (ONNX Runtime / torch.jit.load) at the end. Limits: see
``skinformer/export/api.py``.
"""
import argparse
import sys

from skinformer.engine import setup_cfg
from skinformer.export import ExportError, export_model
from skinformer.utils.logger import setup_logger


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True, metavar="FILE", help="config of the model")
    parser.add_argument("--format", required=True, choices=["onnx", "torchscript"])
    parser.add_argument("--output", required=True, help="output folder")
    parser.add_argument("--export-size", type=int, default=0,
                        help="side of the square the network runs at (default: INPUT.MIN_SIZE_TEST)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides (MODEL.WEIGHTS W)")
    args = parser.parse_args(argv)
    setup_logger(name="skinformer")
    cfg = setup_cfg(args)
    try:
        path, rows = export_model(cfg, args.format, args.output, args.export_size)
    except ExportError as e:
        raise SystemExit(f"export_model: error: {e}")
    print(f"Exported {path}")
    if not rows:
        print(f"Parity check skipped: the {args.format} runtime (onnxruntime) is not installed")
    for r in rows:
        print(f"parity vs PyTorch  size {r['size'][0]}x{r['size'][1]}: max |diff| {r['max_abs_diff']:.2e}, "
              f"mask agreement {100 * r['mask_agreement']:.3f}%")
    return path, rows


if __name__ == "__main__":
    main(sys.argv[1:])
