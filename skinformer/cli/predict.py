"""Predict masks for a folder (or list) of images with a trained model.

Writes, for every input image ``<stem>.<ext>`` (names that would clash keep their extension, then
mirror their folders; see :func:`skinformer.utils.output_names.output_stems`):

* ``<output>/masks/<stem>.png``: the predicted label mask at the image's original size — for
  binary data 0/255 (ISIC submission format), for K classes the class index (background = 0
  when background is a class, else K), for multi-label data one ``<stem>_<class>.png`` per class;
* ``<output>/overlays/<stem>.png`` (unless ``--no-overlay``): the prediction blended over the image,
  with the ground-truth outline when ``--gt`` is given;
* ``<output>/predictions.csv``: one row per mask (size, foreground area) and, with ``--gt FOLDER``,
  the image's ground-truth file and its ``jaccard``, ``dice``, ``precision`` and ``recall`` of the
  predicted foreground against the ground-truth foreground
  (:func:`skinformer.evaluation.per_image_metrics.per_image_scores`; an image whose prediction and
  ground truth are both empty scores 1, the ISIC 2018 Task 1 rule).

The ground truth of image ``<stem>.<ext>`` is ``FOLDER/<stem><--gt-suffix>`` (default ``.png``, e.g.
``_segmentation.png`` for ISIC), decoded with the dataset's mask encoding (``DATASETS.TEST[0]``'s
metadata, binary 0/255 by default). Images without a ground-truth file get empty metric cells.

Images are resized like the test mapper (``INPUT.FIXED_SIZE`` when the config sets it, e.g. the
ISIC 2017 256-px configs, else the shortest-edge resize) and predictions mapped back to their size.

Example::

    skinformer-predict --config-file output/isic2017_r18/config.yaml \
        --input datasets/isic2017/images --gt datasets/isic2017/masks --gt-suffix _segmentation.png \
        --output output/pred MODEL.WEIGHTS output/isic2017_r18/model_final.pth
"""
import argparse
import glob
import os
import sys

import numpy as np
import torch
from tqdm import tqdm

from skinformer.data.catalog import MetadataCatalog
from skinformer.data.mask_io import DataFileError, read_image
from skinformer.engine import DefaultPredictor, setup_cfg
from skinformer.evaluation.ground_truth import read_foreground
from skinformer.evaluation.metrics import binary_confusion
from skinformer.evaluation.per_image_metrics import per_image_scores
from skinformer.structures.label_space import DEFAULT_THRESHOLD, LabelSpace
from skinformer.utils.output_names import output_stems
from skinformer.utils.visualizer import Visualizer, save_image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
# per-image metrics of the CSV with --gt, in column order
GT_METRICS = ("jaccard", "dice", "precision", "recall")
CSV_FIELDS = ["file", "mask", "height", "width", "foreground_pixels", "foreground_fraction"]


def list_images(inputs):
    files = []
    for item in inputs:
        if os.path.isdir(item):
            files += sorted(f for f in glob.glob(os.path.join(item, "*")) if f.lower().endswith(IMAGE_EXTENSIONS))
        elif os.path.isfile(item):
            files.append(item)
        else:
            matched = sorted(glob.glob(item))
            if not matched:
                raise FileNotFoundError(f"--input '{item}' is neither a file, a folder nor a matching glob")
            files += matched
    if not files:
        raise FileNotFoundError(f"No images ({', '.join(IMAGE_EXTENSIONS)}) found in {inputs}")
    # a file named twice (a folder and a glob) is predicted once
    seen, unique = set(), []
    for f in files:
        key = os.path.realpath(f)
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique


def prediction_to_masks(output, metadata, multi_label: bool, threshold: float = DEFAULT_THRESHOLD):
    """Return ``{suffix: uint8 H×W}`` mask images to write for one model output (semantic outputs:
    :meth:`LabelSpace.to_submission_png` of the dataset's label space at ``threshold``)."""
    if "instances" in output:
        inst = output["instances"]
        label = np.zeros(inst.image_size, np.uint8)
        order = torch.argsort(inst.scores).tolist()  # higher scores painted last
        for rank, i in enumerate(order):
            if float(inst.scores[i]) > threshold:
                label[inst.pred_masks[i].cpu().numpy().astype(bool)] = min(rank + 1, 255)
        return {"": label}
    scores = output["sem_seg"].float().cpu()
    return label_space(metadata, scores.shape[0], multi_label, threshold).to_submission_png(scores)


def label_space(metadata, num_channels: int, multi_label: bool, threshold: float = DEFAULT_THRESHOLD) -> LabelSpace:
    """The dataset's label space at ``threshold``; without a test dataset the ``num_channels``
    score channels are classes named by their index."""
    meta = metadata.as_dict() if hasattr(metadata, "as_dict") else dict(metadata)
    if not meta.get("classes"):
        meta["classes"] = [str(i) for i in range(num_channels)]
    return LabelSpace.from_metadata(meta, threshold=threshold, multi_label=multi_label or None)


def ground_truth_files(files, gt_dir: str, suffix: str):
    """``gt_dir/<image stem><suffix>`` for each image (None where there is no such file); raises
    when no image has one (a wrong folder or suffix)."""
    if not os.path.isdir(gt_dir):
        raise FileNotFoundError(f"--gt '{gt_dir}' is not a folder")
    found = []
    for path in files:
        gt = os.path.join(gt_dir, os.path.splitext(os.path.basename(path))[0] + suffix)
        found.append(gt if os.path.isfile(gt) else None)
    if not any(found):
        example = os.path.join(gt_dir, os.path.splitext(os.path.basename(files[0]))[0] + suffix)
        raise FileNotFoundError(f"--gt '{gt_dir}': no image has a ground-truth file '<image stem>{suffix}' there "
                                f"(e.g. {example} for {files[0]}); check --gt and --gt-suffix")
    return found


def foreground_metrics(scores: torch.Tensor, gt_file: str, space: LabelSpace) -> dict:
    """Jaccard, Dice, precision and recall of the predicted foreground of ``K×H×W`` scores (the
    label space's decision rule) against the foreground of ``gt_file`` (ignored pixels left out)."""
    gt_fg, valid = read_foreground(gt_file, space)
    pred_fg = space.foreground(scores.float().cpu())
    if tuple(pred_fg.shape) != tuple(gt_fg.shape):
        raise ValueError(f"Ground truth '{gt_file}' is {gt_fg.shape[1]}x{gt_fg.shape[0]} pixels but its image is "
                         f"{pred_fg.shape[1]}x{pred_fg.shape[0]}; masks must have their image's size")
    counts = binary_confusion(pred_fg, gt_fg, valid)
    per_image = per_image_scores(counts[None], empty="one")
    return {k: round(float(per_image[k][0]), 6) for k in GT_METRICS}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True, help="config of the trained model (e.g. its config.yaml)")
    parser.add_argument("--input", nargs="+", required=True, help="image files, folders or globs")
    parser.add_argument("--output", required=True, help="output folder")
    parser.add_argument("--no-overlay", action="store_true", help="do not write overlay pictures")
    parser.add_argument("--gt", metavar="FOLDER", default=None,
                        help="ground-truth masks <stem><--gt-suffix>: outlined on the overlays, per-image jaccard, "
                             "dice, precision and recall in predictions.csv (single-label semantic models)")
    parser.add_argument("--gt-suffix", default=".png",
                        help="file name of an image's ground truth after its stem (default .png; ISIC: "
                             "_segmentation.png)")
    parser.add_argument("--multi-label", action="store_true",
                        help="treat outputs as independent per-class maps (attribute models); "
                             "default: on when MODEL.*.TEST.MULTILABEL_ON is set")
    parser.add_argument("--probabilities", choices=("none", "png", "npy"), default="none",
                        help="also write the score maps to <output>/probabilities: 8-bit PNG (score x 255, one "
                             "<stem>_<class>.png per class) or float16 K×H×W <stem>.npy")
    parser.add_argument("--threshold", type=float, default=None,
                        help="decision threshold of the masks (default: TEST.THRESHOLD of the config)")
    parser.add_argument("--skip-bad", action="store_true",
                        help="report unreadable images at the end instead of stopping at the first")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides (e.g. MODEL.WEIGHTS x.pth)")
    args = parser.parse_args(argv)

    if args.threshold is not None:
        if not 0.0 < args.threshold < 1.0:
            parser.error(f"--threshold must be in (0, 1), got {args.threshold}")
        args.opts = list(args.opts or []) + ["TEST.THRESHOLD", str(args.threshold)]
    cfg = setup_cfg(args)
    if not cfg.MODEL.WEIGHTS:
        parser.error("MODEL.WEIGHTS is empty: pass the trained weights, e.g. MODEL.WEIGHTS output/x/model_final.pth")
    print(f"Loading model weights from {cfg.MODEL.WEIGHTS}", flush=True)
    predictor = DefaultPredictor(cfg)
    metadata = MetadataCatalog.get(cfg.DATASETS.TEST[0]) if cfg.DATASETS.TEST else MetadataCatalog.get("__predict__")
    multi_label = args.multi_label or any(
        node.get("TEST", {}).get("MULTILABEL_ON", False)
        for node in (cfg.MODEL.get("SIMASKFORMER", {}), cfg.MODEL.get("MASK_FORMER", {}))
    )
    if args.gt is not None and multi_label:
        parser.error("--gt: per-image metrics of multi-label (attribute) models are not supported; "
                     "evaluate them with skinformer-evaluate")
    vis = Visualizer(metadata, multi_label=multi_label, threshold=cfg.TEST.THRESHOLD)
    files = list_images(args.input)
    gt_files = ground_truth_files(files, args.gt, args.gt_suffix) if args.gt is not None else [None] * len(files)
    # before predicting anything: outputs must never overwrite each other
    stems = output_stems(files)
    written = 0
    bad = []
    rows = []
    os.makedirs(os.path.join(args.output, "masks"), exist_ok=True)
    for path, stem, gt_file in tqdm(list(zip(files, stems, gt_files)), desc="predict", unit="img"):
        try:
            image = read_image(path, format="RGB")
        except DataFileError as e:
            if not args.skip_bad:
                raise
            bad.append(f"{path}: {e}")
            continue
        if cfg.INPUT.FORMAT == "BGR":
            image = image[:, :, ::-1]
        output = predictor(image)
        metrics = {}
        if args.gt is not None:
            if "sem_seg" not in output:
                raise ValueError(f"--gt needs a semantic model (outputs 'sem_seg'), got outputs {sorted(output)}")
            metrics = {"gt": gt_file or "", **dict.fromkeys(GT_METRICS, "")}
            if gt_file is not None:
                space = label_space(metadata, output["sem_seg"].shape[0], multi_label, cfg.TEST.THRESHOLD)
                metrics.update(foreground_metrics(output["sem_seg"], gt_file, space))
        for suffix, mask in prediction_to_masks(output, metadata, multi_label, cfg.TEST.THRESHOLD).items():
            save_image_gray(os.path.join(args.output, "masks", f"{stem}{suffix}.png"), mask)
            written += 1
            rows.append({**mask_row(path, f"masks/{stem}{suffix}.png", mask), **metrics})
        if args.probabilities != "none" and "sem_seg" in output:
            written += save_probabilities(os.path.join(args.output, "probabilities"), stem,
                                          output["sem_seg"].float().cpu().numpy(), metadata, args.probabilities)
        if not args.no_overlay:
            rgb = image if cfg.INPUT.FORMAT != "BGR" else image[:, :, ::-1]
            save_image(os.path.join(args.output, "overlays", f"{stem}.png"), vis.draw(rgb, output, gt_file))
            written += 1
    fields = CSV_FIELDS + (["gt", *GT_METRICS] if args.gt is not None else [])
    write_csv(os.path.join(args.output, "predictions.csv"), rows, fields)
    print(f"Wrote {written} files for {len(files) - len(bad)} images to {os.path.abspath(args.output)} "
          f"(per-mask table: predictions.csv)")
    if args.gt is not None:
        missing = [f for f, g in zip(files, gt_files) if g is None]
        if missing:
            print(f"{len(missing)} image(s) have no ground truth '<stem>{args.gt_suffix}' in {args.gt} (empty metric "
                  f"cells): {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    if bad:
        print(f"Skipped {len(bad)} unreadable images:\n  " + "\n  ".join(bad))
    return 0 if len(bad) < len(files) else 1


def mask_row(path: str, mask_file: str, mask: np.ndarray) -> dict:
    """One CSV row: the lesion area of a 0/255 mask (binary data, or one class of multi-label
    data); label maps of several classes get no area."""
    row = {"file": path, "mask": mask_file, "height": mask.shape[0], "width": mask.shape[1],
           "foreground_pixels": "", "foreground_fraction": ""}
    if set(np.unique(mask).tolist()) <= {0, 255}:
        fg = int((mask == 255).sum())
        row["foreground_pixels"], row["foreground_fraction"] = fg, round(fg / mask.size, 6)
    return row


def save_probabilities(folder: str, stem: str, scores: np.ndarray, metadata, fmt: str) -> int:
    """Write ``K×H×W`` scores as one 8-bit PNG per class or one float16 ``.npy``; returns files written."""
    if fmt == "npy":
        path = os.path.join(folder, f"{stem}.npy")
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        np.save(path, scores.astype(np.float16))
        return 1
    classes = list(metadata.get("classes", []) or []) or [str(i) for i in range(scores.shape[0])]
    for c, name in enumerate(classes[: scores.shape[0]]):
        png = np.clip(np.rint(scores[c] * 255.0), 0, 255).astype(np.uint8)
        save_image_gray(os.path.join(folder, f"{stem}_{name}.png"), png)
    return min(len(classes), scores.shape[0])


def write_csv(path: str, rows, fields=CSV_FIELDS) -> None:
    import csv

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def save_image_gray(path, mask):
    from PIL import Image

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    Image.fromarray(mask).save(path)


if __name__ == "__main__":
    sys.exit(main())
