"""Mask annotation tool (gradio ImageEditor):
``python demo/annotate.py --images DIR [--labels DIR] [--classes lesion ...] --port N``.

Browse the images of a folder (prev / next), paint a mask with a brush (adjustable size, one colour
per class), erase with the eraser, and save ``<stem>_mask.png`` into ``--labels`` (default: beside
the image). One class: 0/255 masks (the ``binary`` encoding); several classes: the class index
(0-based in ``--classes`` order) with unpainted pixels ``--background-value``. An existing mask
is loaded as the starting layer, so masks can be corrected. API names: ``/show``, ``/prev``,
``/next``, ``/save``.
"""
import argparse
import glob
import os
from typing import Optional, Sequence, Tuple

import numpy as np

from skinformer.data.mask_io import decode_binary, read_image, read_mask_array
from skinformer.utils.visualizer import default_palette

__all__ = ["Annotator", "build_annotator", "main"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
MASK_SUFFIX = "_mask"


def _dataset_folder(name: str) -> str:
    """Image folder of a registered dataset (so the built-in synthetic set can be opened by name)."""
    import skinformer.data.datasets  # noqa: F401  (declares the built-in names)
    from skinformer.data.catalog import DatasetCatalog

    try:
        records = DatasetCatalog.get(name)  # resolves lazily registered names
    except KeyError:
        raise FileNotFoundError(f"--images '{name}' is neither a folder nor a registered dataset name") from None
    if not records:
        raise FileNotFoundError(f"dataset '{name}' has no images")
    return os.path.dirname(records[0]["file_name"])


class Annotator:
    """Folder browsing and mask <-> editor-layer conversion, independent of the UI.

    Args:
        image_dir: folder of images (files ending in ``_mask.png`` are skipped), or the name of a
            registered dataset (its images' folder).
        label_dir: where masks go (None: beside the images).
        classes: class names; the brush colour of class ``i`` is ``default_palette(K)[i]``.
        background_value: value of unpainted pixels in index masks.
    """

    def __init__(self, image_dir: str, label_dir: Optional[str] = None, classes: Sequence[str] = ("lesion",),
                 background_value: int = 0):
        if not os.path.isdir(image_dir):
            image_dir = _dataset_folder(image_dir)
        self.files = sorted(f for f in glob.glob(os.path.join(image_dir, "*"))
                            if f.lower().endswith(IMAGE_EXTENSIONS)
                            and not os.path.splitext(f)[0].endswith(MASK_SUFFIX))
        if not self.files:
            raise FileNotFoundError(f"No images ({', '.join(IMAGE_EXTENSIONS)}) in '{image_dir}'")
        self.label_dir = label_dir or image_dir
        self.classes = list(classes)
        if not self.classes:
            raise ValueError("--classes needs at least one class name")
        self.colors = default_palette(len(self.classes))
        self.background_value = int(background_value)

    @property
    def binary(self) -> bool:
        """One class: masks are saved as 0/255 instead of class indices."""
        return len(self.classes) == 1

    def clamp(self, index) -> int:
        """``index`` (None counts as 0) limited to the folder's images."""
        return int(min(max(int(index or 0), 0), len(self.files) - 1))

    def mask_path(self, index: int) -> str:
        """``<label_dir>/<stem>_mask.png`` of image ``index``."""
        stem = os.path.splitext(os.path.basename(self.files[index]))[0]
        return os.path.join(self.label_dir, f"{stem}{MASK_SUFFIX}.png")

    def load_labels(self, index: int) -> np.ndarray:
        """``H×W`` int labels of the saved mask (-1 = unpainted); all -1 when none is saved."""
        h, w = read_image(self.files[index]).shape[:2]
        path = self.mask_path(index)
        labels = np.full((h, w), -1, np.int64)
        if os.path.isfile(path):
            arr = read_mask_array(path)
            if self.binary:
                labels[decode_binary(arr, path)] = 0
            else:
                arr = arr if arr.ndim == 2 else arr[..., 0]
                for c in range(len(self.classes)):
                    if c != self.background_value:
                        labels[arr == c] = c
        return labels

    def layer(self, labels: np.ndarray) -> np.ndarray:
        """Labels -> RGBA ``H×W×4`` editor layer (class colour, opaque where painted)."""
        rgba = np.zeros((*labels.shape, 4), np.uint8)
        for c, color in enumerate(self.colors):
            rgba[labels == c] = (*color, 255)
        return rgba

    def labels_from_layers(self, layers: Sequence[np.ndarray], hw: Tuple[int, int]) -> np.ndarray:
        """Painted pixels of RGBA layers (alpha > 0; later layers on top) -> ``H×W`` labels, each
        pixel the class whose brush colour is nearest (-1 = unpainted)."""
        labels = np.full(hw, -1, np.int64)
        palette = np.asarray(self.colors, np.float32)
        for layer in layers:
            if layer is None:
                continue
            layer = np.asarray(layer)
            if layer.shape[:2] != tuple(hw):
                raise ValueError(f"layer of size {layer.shape[:2]} does not match the image {tuple(hw)}")
            if layer.ndim != 3 or layer.shape[2] != 4:
                raise ValueError(f"expected an RGBA layer, got shape {layer.shape}")
            painted = layer[..., 3] > 0
            if painted.any():
                rgb = layer[painted][:, :3].astype(np.float32)
                labels[painted] = np.argmin(((rgb[:, None] - palette[None]) ** 2).sum(-1), axis=1)
        return labels

    def encode(self, labels: np.ndarray) -> np.ndarray:
        """``H×W`` labels (-1 = unpainted) -> the uint8 mask file: 0/255 for one class, else
        the class index with ``background_value`` where nothing was painted."""
        if self.binary:
            return (labels == 0).astype(np.uint8) * 255
        out = np.full(labels.shape, self.background_value, np.uint8)
        painted = labels >= 0
        out[painted] = labels[painted]
        return out

    def save(self, index: int, layers: Sequence[np.ndarray]) -> str:
        """Write the editor ``layers`` of image ``index`` as its mask file; returns the path."""
        from PIL import Image

        index = self.clamp(index)
        hw = read_image(self.files[index]).shape[:2]
        path = self.mask_path(index)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        Image.fromarray(self.encode(self.labels_from_layers(layers, hw))).save(path)
        return path


def build_annotator(ann: Annotator, brush_size: int = 12):
    """The gradio Blocks of an :class:`Annotator` (not launched)."""
    import gradio as gr

    def editor_value(index):
        image = read_image(ann.files[index])
        return {"background": image, "layers": [ann.layer(ann.load_labels(index))], "composite": None}

    def show(index):
        index = ann.clamp(index)
        saved = "saved mask loaded" if os.path.isfile(ann.mask_path(index)) else "no mask yet"
        caption = f"{index + 1}/{len(ann.files)}: {os.path.basename(ann.files[index])} ({saved})"
        return editor_value(index), caption, index

    def save(index, value):
        if not value:
            raise gr.Error("Nothing to save: the editor is empty")
        try:
            path = ann.save(index, value.get("layers") or [])
        except ValueError as e:
            raise gr.Error(str(e))
        return f"saved {path}"

    def brush(size):
        return gr.update(brush=gr.Brush(default_size=int(size), colors=["#%02x%02x%02x" % c for c in ann.colors],
                                        color_mode="fixed"))

    with gr.Blocks(title="skinformer annotation") as blocks:
        gr.Markdown(f"# Mask annotation — classes: {', '.join(ann.classes)}; masks go to `{ann.label_dir}`")
        index = gr.Number(0, precision=0, label="Image index")
        caption = gr.Markdown()
        editor = gr.ImageEditor(type="numpy", image_mode="RGBA", layers=False, label="Paint the mask; eraser removes it",
                                brush=gr.Brush(default_size=brush_size, colors=["#%02x%02x%02x" % c for c in ann.colors],
                                               color_mode="fixed"),
                                eraser=gr.Eraser(default_size=brush_size), sources=(), format="png")
        size = gr.Slider(1, 100, value=brush_size, step=1, label="Brush size")
        with gr.Row():
            prev_btn = gr.Button("◀ Prev")
            save_btn = gr.Button("Save mask", variant="primary")
            next_btn = gr.Button("Next ▶")
        status = gr.Textbox(label="Status", interactive=False)
        outputs = [editor, caption, index]
        blocks.load(show, index, outputs, api_name=False)
        index.submit(show, index, outputs, api_name="show")
        prev_btn.click(lambda i: show(int(i or 0) - 1), index, outputs, api_name="prev")
        next_btn.click(lambda i: show(int(i or 0) + 1), index, outputs, api_name="next")
        save_btn.click(save, [index, editor], status, api_name="save")
        size.change(brush, size, editor, api_name=False)
    return blocks


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", required=True, help="folder of images to annotate (or a registered dataset name)")
    parser.add_argument("--labels", default=None, help="folder for the masks (default: beside the images)")
    parser.add_argument("--classes", nargs="+", default=["lesion"],
                        help="class names; one class writes 0/255 masks, several the class index")
    parser.add_argument("--background-value", type=int, default=0, help="unpainted value in index masks")
    parser.add_argument("--brush-size", type=int, default=12)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7861)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Entry point of ``demo/annotate.py``."""
    args = get_parser().parse_args(argv)
    ann = Annotator(args.images, args.labels, args.classes, args.background_value)
    print(f"Annotating {len(ann.files)} images from {args.images}; masks -> {ann.label_dir}")
    build_annotator(ann, args.brush_size).queue().launch(
        server_name=args.host, server_port=args.port, allowed_paths=[os.path.abspath(args.images)])
