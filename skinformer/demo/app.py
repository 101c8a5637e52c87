"""The segmentation web demo (gradio): ``python demo/app.py --config-file CFG --port N MODEL.WEIGHTS W``.

Tabs:

* **Segment**: pick a loaded model, upload one or several images (or take the synthetic examples),
  see the overlays (opacity, fill / contour, a colour per class), the per-class areas, and
  download the masks (0/255 for one class, else class index).
* **Compare**: one image and its ground-truth mask; original / ground truth / model A / model B
  side by side with per-image precision, recall and Dice per class.
* **Models**: load another config + weights; it joins both tabs' model lists.

Everything runs on the config's ``MODEL.DEVICE`` (CPU in the quick-start configs). API names
(for ``gradio_client``): ``/segment``, ``/compare``, ``/load_model``.
"""
import argparse
import logging
import os
import tempfile
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence

import numpy as np

from skinformer.data.mask_io import read_image
from skinformer.utils.visualizer import save_image

from .segment import (
    RENDER_STYLES, DemoModel, class_areas, class_masks, compare_metrics, encode_mask, load_model, parse_colors, render,
)

__all__ = ["build_demo", "main", "synthetic_examples"]

logger = logging.getLogger("skinformer.demo")


def synthetic_examples(num: int = 4) -> List[Dict[str, str]]:
    """``[{"image", "mask"}]`` of the first synthetic validation images (generated on first use)."""
    from skinformer.data.catalog import DatasetCatalog

    records = DatasetCatalog.get("synthetic_lesion_val")[:num]
    return [{"image": r["file_name"], "mask": r["sem_seg_file_name"]} for r in records]


def _path(f) -> str:
    # gradio hands files over as paths (str) or objects with .name / dicts with "path"
    if isinstance(f, dict):
        return f["path"]
    return f if isinstance(f, str) else f.name


def _hex(color) -> str:
    return "#%02x%02x%02x" % tuple(color)


def _write_gray(path: str, mask: np.ndarray) -> str:
    from PIL import Image

    Image.fromarray(mask).save(path)
    return path


class DemoApp:
    """The demo's state (loaded models) and its callbacks, independent of the gradio layout."""

    def __init__(self, models: Sequence[DemoModel], examples: Sequence[Dict[str, str]] = ()):
        self.models: "OrderedDict[str, DemoModel]" = OrderedDict((m.name, m) for m in models)
        self.examples = list(examples)
        self.workdir = tempfile.mkdtemp(prefix="skinformer_demo_")

    def model(self, name: str) -> DemoModel:
        """The loaded model called ``name``; ``ValueError`` listing the loaded ones otherwise."""
        if name not in self.models:
            raise ValueError(f"Unknown model '{name}'; loaded: {list(self.models)}")
        return self.models[name]

    def _outdir(self) -> str:
        return tempfile.mkdtemp(dir=self.workdir)

    def segment(self, model_name: str, files, threshold: float, opacity: float, style: str, colors: str):
        """-> (overlay gallery [(png, caption)], areas rows, mask PNG paths)."""
        if not files:
            raise ValueError("Upload at least one image")
        model = self.model(model_name)
        palette = parse_colors(colors, model.palette)
        out = self._outdir()
        gallery, rows, mask_files = [], [], []
        space = model.label_space
        for f in files:
            path = _path(f)
            image = read_image(path, format="RGB")
            masks = class_masks(model, model(image), image.shape[:2], threshold)
            stem = os.path.splitext(os.path.basename(path))[0]
            overlay = os.path.join(out, f"{stem}_overlay.png")
            save_image(overlay, render(image, masks, palette, opacity, style))
            gallery.append((overlay, stem))
            mask_files.append(_write_gray(os.path.join(out, f"{stem}_mask.png"), encode_mask(masks, space)))
            rows += [[stem, name, px, round(pct, 3)] for name, px, pct in class_areas(masks, model.classes)]
        return gallery, rows, mask_files

    def compare(self, image_file, gt_file, model_a: str, model_b: str, threshold: float, opacity: float,
                style: str):
        """-> (gallery [original, ground truth, A, B], metric rows [model, class, P, R, Dice])."""
        if not image_file or not gt_file:
            raise ValueError("Upload an image and its ground-truth mask")
        image = read_image(_path(image_file), format="RGB")
        a, b = self.model(model_a), self.model(model_b)
        gt = a.label_space.decode(_path(gt_file))
        if gt.shape != image.shape[:2]:
            raise ValueError(f"ground-truth mask '{os.path.basename(_path(gt_file))}' is {gt.shape[1]}x{gt.shape[0]}, "
                             f"the image {image.shape[1]}x{image.shape[0]}")
        from skinformer.utils.visualizer import label_map_to_masks

        out = self._outdir()
        panels = [(image, "original"), (render(image, label_map_to_masks(gt, len(a.classes)), a.palette, opacity,
                                               style), "ground truth")]
        rows = []
        for tag, model in (("A", a), ("B", b)):
            masks = class_masks(model, model(image), image.shape[:2], threshold)
            panels.append((render(image, masks, model.palette, opacity, style), f"{tag}: {model.name}"))
            rows += [[f"{tag}: {model.name}", c, round(p, 4), round(r, 4), round(d, 4)]
                     for c, p, r, d in compare_metrics(masks, gt, model.classes, model.label_space.ignore_label)]
        gallery = []
        for i, (img, caption) in enumerate(panels):
            p = os.path.join(out, f"panel{i}.png")
            save_image(p, img)
            gallery.append((p, caption))
        return gallery, rows

    def load(self, config_file: str, weights: str):
        """Load another model; returns its name."""
        if not config_file:
            raise ValueError("Give the config file of the model to load")
        model = load_model(config_file.strip(), ["MODEL.WEIGHTS", weights.strip()] if weights else [])
        self.models[model.name] = model
        return model.name


def build_demo(app: DemoApp):
    """The gradio Blocks of :class:`DemoApp` (not launched)."""
    import gradio as gr

    def guard(fn):
        # a clear message in the UI / client instead of a bare "Error"
        def wrapped(*args):
            try:
                return fn(*args)
            except (ValueError, FileNotFoundError, OSError) as e:
                raise gr.Error(str(e))
        return wrapped

    names = list(app.models)
    first = app.models[names[0]]
    default_threshold = float(first.predictor.cfg.TEST.THRESHOLD)
    with gr.Blocks(title="skinformer demo") as blocks:
        gr.Markdown("# skinformer segmentation demo")
        with gr.Tab("Segment"):
            with gr.Row():
                with gr.Column():
                    model_dd = gr.Dropdown(names, value=names[0], label="Model")
                    files = gr.File(file_count="multiple", file_types=["image"], label="Images")
                    example_btn = gr.Button("Use the synthetic example images")
                    threshold = gr.Slider(0.0, 1.0, value=default_threshold, step=0.001, label="Threshold")
                    opacity = gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="Opacity")
                    style = gr.Radio(list(RENDER_STYLES), value="fill", label="Style")
                    colors = gr.Textbox(", ".join(_hex(c) for c in first.palette),
                                        label=f"Colour per class ({', '.join(first.classes)}), hex, comma-separated")
                    run = gr.Button("Segment", variant="primary")
                with gr.Column():
                    gallery = gr.Gallery(label="Overlays", format="png", columns=2)
                    areas = gr.Dataframe(headers=["image", "class", "pixels", "percent"], label="Per-class area")
                    masks = gr.File(file_count="multiple", label="Masks (PNG)")
            inputs = [model_dd, files, threshold, opacity, style, colors]
            run.click(guard(app.segment), inputs, [gallery, areas, masks], api_name="segment")
            # redraw when a display setting changes (the model reruns: CPU-cheap for demo models)
            for control in (opacity, style):
                control.change(guard(lambda *a: app.segment(*a) if a[1] else (None, None, None)),
                               inputs, [gallery, areas, masks], api_name=False)
            example_btn.click(lambda: [e["image"] for e in app.examples], None, files, api_name=False)
        with gr.Tab("Compare"):
            with gr.Row():
                with gr.Column():
                    image_in = gr.File(file_types=["image"], label="Image")
                    gt_in = gr.File(label="Ground-truth mask")
                    a_dd = gr.Dropdown(names, value=names[0], label="Model A")
                    b_dd = gr.Dropdown(names, value=names[-1], label="Model B")
                    c_threshold = gr.Slider(0.0, 1.0, value=default_threshold, step=0.001, label="Threshold")
                    c_opacity = gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="Opacity")
                    c_style = gr.Radio(list(RENDER_STYLES), value="contour", label="Style")
                    if app.examples:
                        gr.Examples([[e["image"], e["mask"]] for e in app.examples], [image_in, gt_in],
                                    label="Synthetic examples")
                    compare_btn = gr.Button("Compare", variant="primary")
                with gr.Column():
                    panels = gr.Gallery(label="original / ground truth / A / B", format="png", columns=2)
                    scores = gr.Dataframe(headers=["model", "class", "precision", "recall", "Dice"],
                                          label="Per-image metrics")
            compare_btn.click(guard(app.compare), [image_in, gt_in, a_dd, b_dd, c_threshold, c_opacity, c_style],
                              [panels, scores], api_name="compare")
        with gr.Tab("Models"):
            cfg_in = gr.Textbox(label="Config file")
            w_in = gr.Textbox(label="Weights (MODEL.WEIGHTS)")
            load_btn = gr.Button("Load model")
            loaded = gr.Textbox(label="Loaded", interactive=False)

            def load(config_file, weights):
                name = guard(app.load)(config_file, weights)
                choices = gr.update(choices=list(app.models))
                return name, choices, choices, choices

            load_btn.click(load, [cfg_in, w_in], [loaded, model_dd, a_dd, b_dd], api_name="load_model")
    return blocks


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", required=True, metavar="FILE", help="config of the model to serve")
    parser.add_argument("--compare-config", metavar="FILE", help="config of a second model (model B)")
    parser.add_argument("--compare-weights", metavar="W", help="weights of the second model")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=7860, help="port (default: %(default)s)")
    parser.add_argument("--num-examples", type=int, default=4, help="synthetic example images (0: none)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides, e.g. MODEL.WEIGHTS W")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Entry point of ``demo/app.py`` (and the ``skinformer-demo`` command)."""
    from skinformer.utils.logger import setup_logger

    args = get_parser().parse_args(argv)
    setup_logger(name="skinformer")
    models = [load_model(args.config_file, args.opts)]
    logger.info("Loaded model '%s'", models[0].name)
    if args.compare_config:
        models.append(load_model(args.compare_config,
                                 ["MODEL.WEIGHTS", args.compare_weights] if args.compare_weights else []))
        logger.info("Loaded model '%s'", models[1].name)
    examples = synthetic_examples(args.num_examples) if args.num_examples > 0 else []
    app = DemoApp(models, examples)
    blocks = build_demo(app)
    logger.info("Serving on http://%s:%d", args.host, args.port)
    blocks.queue().launch(server_name=args.host, server_port=args.port,
                          allowed_paths=[os.path.dirname(e["image"]) for e in examples] + [app.workdir])


if __name__ == "__main__":
    main()
