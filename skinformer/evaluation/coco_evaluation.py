"""COCO-style instance segmentation / detection evaluator (pycocotools ``COCOeval``).

Results, ×100 like detectron2, under the task keys ``"segm"`` and ``"bbox"``: ``AP``, ``AP50``,
``AP75``, ``APs``, ``APm``, ``APl`` and ``AP-<category>``, in original image coordinates (the
model contract: instance outputs are at the original resolution).

Ground truth: the metadata's ``json_file`` when present (COCO json; evaluated images are matched
by ``image_id``, else by file name, and only the evaluated images count), otherwise the dataset
dicts' ``annotations`` converted on the fly (polygons or RLE; contiguous category ids mapped back
through ``thing_dataset_id_to_contiguous_id``, or ``id + 1`` without that mapping).

No predictions at all: a warning, and COCOeval runs on an empty result set, so every AP is 0 where
the ground truth has instances; an AP whose area range / category has no ground truth is NaN
(COCOeval's -1).
"""
import contextlib
import copy
import io
import json
import logging
import os
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
from pycocotools import mask as mask_util
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from skinformer.config import configurable
from skinformer.utils import comm

from .build import EVALUATOR_REGISTRY
from .evaluator import DatasetEvaluator

__all__ = ["COCOInstanceEvaluator", "instances_to_coco_json", "convert_to_coco_dict"]

logger = logging.getLogger(__name__)

COCO_METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
# detectron2 BoxMode values used by dataset dicts
_BOX_MODES = {0: "xyxy", 1: "xywh", "XYXY_ABS": "xyxy", "XYWH_ABS": "xywh"}


def _quiet():
    """pycocotools prints progress to stdout; route it to the log instead."""
    return contextlib.redirect_stdout(io.StringIO())


def instances_to_coco_json(instances, image_id: Any = None) -> List[Dict[str, Any]]:
    """Encode one image's predicted ``Instances`` as COCO result dicts.

    Uses ``pred_masks`` (bool N×H×W; RLE-encoded here, the only place masks are encoded),
    ``pred_boxes`` (xyxy; derived from the masks when absent), ``scores`` and ``pred_classes``
    (contiguous ids, mapped to dataset ids later). ``image_id`` is filled in as given.
    """
    n = len(instances)
    if n == 0:
        return []
    scores = instances.scores.detach().cpu().float().tolist()
    classes = instances.pred_classes.detach().cpu().tolist()
    rles = None
    if instances.has("pred_masks"):
        masks = instances.pred_masks.detach().cpu()
        masks = masks.tensor if hasattr(masks, "tensor") else masks  # BitMasks or a bool tensor
        if masks.is_floating_point():  # soft masks: the usual 0.5 cut
            masks = masks > 0.5
        masks = masks.numpy().astype(np.uint8)
        rles = mask_util.encode(np.asfortranarray(masks.transpose(1, 2, 0)))
        for r in rles:
            r["counts"] = r["counts"].decode("ascii")  # JSON-serialisable
    if instances.has("pred_boxes"):
        b = instances.pred_boxes.tensor.detach().cpu().double()
        boxes = torch.stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], dim=1).tolist()
    elif rles is not None:
        boxes = mask_util.toBbox(rles).tolist()
    else:
        raise ValueError("instances need 'pred_masks' or 'pred_boxes' for COCO evaluation")
    out = []
    for i in range(n):
        r = {"image_id": image_id, "category_id": int(classes[i]), "bbox": [float(v) for v in boxes[i]],
             "score": float(scores[i])}
        if rles is not None:
            r["segmentation"] = rles[i]
        out.append(r)
    return out


def _xywh(bbox: Sequence[float], mode) -> List[float]:
    key = getattr(mode, "value", mode) if not isinstance(mode, str) else mode
    kind = _BOX_MODES.get(key)
    if kind is None:
        raise ValueError(f"Unsupported bbox_mode {mode!r}; expected XYXY_ABS (0) or XYWH_ABS (1)")
    x0, y0, a, b = (float(v) for v in bbox)
    return [x0, y0, a - x0, b - y0] if kind == "xyxy" else [x0, y0, a, b]


def convert_to_coco_dict(dataset_dicts: List[dict], classes: Sequence[str],
                         contiguous_to_dataset_id: Optional[Dict[int, int]] = None) -> Dict[str, Any]:
    """COCO ground-truth json (as a dict) from dataset dicts with ``annotations``.

    Image ids are kept when they are unique ints, else renumbered from 1 (predictions are then
    matched by file name). Annotation ids start at 1 (COCOeval treats 0 as "unmatched").
    """
    to_dataset_id = contiguous_to_dataset_id or {i: i + 1 for i in range(len(classes))}
    ids = [d.get("image_id") for d in dataset_dicts]
    keep_ids = all(isinstance(i, (int, np.integer)) for i in ids) and len(set(ids)) == len(ids)
    images, annotations = [], []
    for idx, d in enumerate(dataset_dicts):
        img_id = int(d["image_id"]) if keep_ids else idx + 1
        h, w = int(d["height"]), int(d["width"])
        images.append({"id": img_id, "height": h, "width": w, "file_name": d.get("file_name", str(img_id))})
        for ann in d.get("annotations", []):
            cat = int(ann["category_id"])
            if cat not in to_dataset_id:
                raise ValueError(f"{d.get('file_name')}: category_id {cat} is not one of the {len(classes)} classes")
            bbox = _xywh(ann["bbox"], ann.get("bbox_mode", 1))
            seg = ann.get("segmentation")
            if isinstance(seg, list) and len(seg):
                area = float(mask_util.area(mask_util.merge(mask_util.frPyObjects(seg, h, w))))
            elif isinstance(seg, dict):
                if isinstance(seg.get("counts"), list):  # uncompressed RLE -> compressed
                    seg = mask_util.frPyObjects(seg, h, w)
                seg = dict(seg, counts=seg["counts"].decode("ascii") if isinstance(seg["counts"], bytes) else seg["counts"])
                area = float(mask_util.area(seg))
            else:
                # no mask: the box stands in for it so that segm evaluation still runs
                x, y, bw, bh = bbox
                seg = [[x, y, x + bw, y, x + bw, y + bh, x, y + bh]]
                area = bw * bh
            annotations.append({
                "id": len(annotations) + 1, "image_id": img_id, "category_id": int(to_dataset_id[cat]),
                "bbox": bbox, "area": area, "iscrowd": int(ann.get("iscrowd", 0)), "segmentation": seg,
            })
    categories = [{"id": int(to_dataset_id[i]), "name": name} for i, name in enumerate(classes)]
    return {"images": images, "annotations": annotations, "categories": categories,
            "info": {"description": "converted by skinformer"}}


class COCOInstanceEvaluator(DatasetEvaluator):
    """Collect per-image instance predictions (as RLE) and score them with ``COCOeval``."""

    @configurable
    def __init__(self, *, classes: Optional[Sequence[str]] = None, json_file: Optional[str] = None,
                 dataset_name: Optional[str] = None, dataset_dicts: Optional[List[dict]] = None,
                 thing_dataset_id_to_contiguous_id: Optional[Dict[int, int]] = None,
                 tasks: Sequence[str] = ("segm", "bbox"), output_dir: Optional[str] = None):
        """
        Args:
            classes: category names in contiguous-id order.
            json_file: COCO ground-truth json; if None, ``dataset_dicts`` (or the registered
                ``dataset_name``'s dicts) are converted with :func:`convert_to_coco_dict`.
            thing_dataset_id_to_contiguous_id: dataset category id -> contiguous id (metadata).
            tasks: subset of ``("segm", "bbox")``.
            output_dir: if set, the predictions are saved to ``coco_instances_results.json``.
        """
        for t in tasks:
            if t not in ("segm", "bbox"):
                raise ValueError(f"Unknown COCO task {t!r}; expected 'segm' and/or 'bbox'")
        if json_file is None and dataset_dicts is None and dataset_name is None:
            raise ValueError("COCOInstanceEvaluator needs json_file, dataset_dicts or dataset_name for ground truth")
        self._classes = list(classes) if classes is not None else None
        self._json_file = json_file
        self._dataset_name = dataset_name
        self._dataset_dicts = dataset_dicts
        self._id_map = ({int(k): int(v) for k, v in thing_dataset_id_to_contiguous_id.items()}
                        if thing_dataset_id_to_contiguous_id else None)
        self._tasks = tuple(tasks)
        self._output_dir = output_dir
        self._coco_gt: Optional[COCO] = None
        self.reset()

    @classmethod
    def from_config(cls, cfg, dataset_name: str, output_dir: Optional[str] = None) -> Dict[str, Any]:
        """Return the constructor arguments from ``dataset_name``'s metadata (``classes``, ``json_file``, id map)."""
        from skinformer.data.catalog import MetadataCatalog

        meta = MetadataCatalog.get(dataset_name)
        return dict(
            classes=meta.get("classes", None), json_file=meta.get("json_file", None), dataset_name=dataset_name,
            thing_dataset_id_to_contiguous_id=meta.get("thing_dataset_id_to_contiguous_id", None),
            output_dir=output_dir,
        )

    def reset(self) -> None:
        """Drop the predictions collected so far."""
        self._predictions: List[Dict[str, Any]] = []

    def process(self, inputs: List[dict], outputs: List[dict]) -> None:
        """Encode each output's ``instances`` as COCO result dicts and keep them with the image's id and file name.

        Raises ``ValueError`` if the instances' ``image_size`` is not the input's ``(height, width)``.
        """
        for inp, out in zip(inputs, outputs):
            rec = {"image_id": inp.get("image_id"), "file_name": inp.get("file_name"), "instances": []}
            if "instances" in out:
                inst = out["instances"]
                h, w = inp.get("height"), inp.get("width")
                if h is not None and w is not None and tuple(inst.image_size) != (int(h), int(w)):
                    raise ValueError(
                        f"'instances' for {inp.get('file_name')!r} have image_size {tuple(inst.image_size)} but the "
                        f"image is {h}×{w}: instance outputs must be at the original resolution"
                    )
                rec["instances"] = instances_to_coco_json(inst)
            self._predictions.append(rec)

    # ---------------------------------------------------------------------------------------------
    def _load_gt(self) -> COCO:
        if self._coco_gt is not None:
            return self._coco_gt
        coco = COCO()
        if self._json_file is not None:
            with open(self._json_file) as f:
                coco.dataset = json.load(f)
        else:
            dicts = self._dataset_dicts
            if dicts is None:
                from skinformer.data.catalog import DatasetCatalog

                dicts = DatasetCatalog.get(self._dataset_name)
            if self._classes is None:
                raise ValueError("COCOInstanceEvaluator needs 'classes' to convert dataset dicts to COCO format")
            reverse = {v: k for k, v in self._id_map.items()} if self._id_map else None
            coco.dataset = convert_to_coco_dict(dicts, self._classes, reverse)
        with _quiet():
            coco.createIndex()
        self._coco_gt = coco
        return coco

    def _contiguous_to_dataset_id(self, coco: COCO) -> Dict[int, int]:
        if self._id_map:
            return {v: k for k, v in self._id_map.items()}
        # detectron2's load_coco_json convention: sorted dataset ids -> 0..K-1
        return {i: cid for i, cid in enumerate(sorted(coco.getCatIds()))}

    def _image_id_resolver(self, coco: COCO):
        by_name: Dict[str, Any] = {}
        for img in coco.dataset.get("images", []):
            by_name.setdefault(os.path.basename(str(img.get("file_name", ""))), img["id"])

        def resolve(rec) -> Any:
            iid = rec["image_id"]
            if iid in coco.imgs:
                return iid
            try:
                if int(iid) in coco.imgs:
                    return int(iid)
            except (TypeError, ValueError):
                pass
            name = os.path.basename(str(rec.get("file_name") or ""))
            if name in by_name:
                return by_name[name]
            raise KeyError(
                f"Evaluated image image_id={iid!r} file_name={rec.get('file_name')!r} is not in the COCO ground "
                f"truth ({self._json_file or self._dataset_name}); matched by id and by file name"
            )

        return resolve

    def evaluate(self) -> Dict[str, Dict[str, float]]:
        """Gather the predictions on the main process and run ``COCOeval`` for each task.

        Returns ``{"segm"|"bbox": {AP, AP50, AP75, APs, APm, APl, AP-<category>}}`` (×100, NaN where undefined) on the
        main process and ``{}`` elsewhere; writes ``coco_instances_results.json`` when ``output_dir`` is set.
        """
        gathered = comm.gather(self._predictions)
        if not comm.is_main_process():
            return {}
        records = [r for g in gathered for r in g]
        coco_gt = self._load_gt()
        resolve = self._image_id_resolver(coco_gt)
        to_dataset_id = self._contiguous_to_dataset_id(coco_gt)
        img_ids, results = [], []
        for rec in records:
            gid = resolve(rec)
            img_ids.append(gid)
            for r in rec["instances"]:
                if r["category_id"] not in to_dataset_id:
                    raise ValueError(f"Predicted class {r['category_id']} for {rec.get('file_name')!r} has no "
                                     f"category in the ground truth (known: {sorted(to_dataset_id)})")
                results.append(dict(r, image_id=gid, category_id=to_dataset_id[r["category_id"]]))
        img_ids = sorted(set(img_ids))
        if not results:
            logger.warning("COCO evaluation: no predictions from the model; APs are 0 where ground truth exists")
        if self._output_dir:
            os.makedirs(self._output_dir, exist_ok=True)
            with open(os.path.join(self._output_dir, "coco_instances_results.json"), "w") as f:
                json.dump(results, f)
        has_masks = any("segmentation" in r for r in results)
        out = {}
        for task in self._tasks:
            if task == "segm" and results and not has_masks:
                logger.warning("COCO evaluation: predictions have no masks; skipping 'segm'")
                continue
            out[task] = self._evaluate_task(coco_gt, results, task, img_ids)
        return out

    def _evaluate_task(self, coco_gt: COCO, results: List[dict], task: str, img_ids: List[Any]) -> Dict[str, float]:
        dets = copy.deepcopy(results)
        if task == "segm":
            # without the box, COCO uses the mask area for the small/medium/large split (as detectron2)
            for d in dets:
                d.pop("bbox", None)
        with _quiet():
            if dets:
                coco_dt = coco_gt.loadRes(dets)
            else:
                coco_dt = COCO()
                coco_dt.dataset = {"images": copy.deepcopy(coco_gt.dataset.get("images", [])),
                                   "categories": copy.deepcopy(coco_gt.dataset.get("categories", [])),
                                   "annotations": []}
                coco_dt.createIndex()
        coco_eval = COCOeval(coco_gt, coco_dt, task)
        coco_eval.params.imgIds = img_ids
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            coco_eval.evaluate()
            coco_eval.accumulate()
            coco_eval.summarize()
        logger.info(f"COCOeval '{task}' on {len(img_ids)} images:\n{buf.getvalue()}")
        stats = coco_eval.stats
        res = {m: (float(stats[i] * 100) if stats[i] >= 0 else float("nan")) for i, m in enumerate(COCO_METRICS)}
        precision = coco_eval.eval["precision"]  # T×R×K×A×M
        for k, cat_id in enumerate(coco_eval.params.catIds):
            p = precision[:, :, k, 0, -1]
            p = p[p > -1]
            name = coco_gt.cats[cat_id].get("name", str(cat_id))
            res[f"AP-{name}"] = float(p.mean() * 100) if p.size else float("nan")
        return res


@EVALUATOR_REGISTRY.register()
def coco_instance(cfg, dataset_name: str, output_dir: Optional[str] = None) -> COCOInstanceEvaluator:
    """``evaluator_type: coco_instance`` -> :class:`COCOInstanceEvaluator`."""
    return COCOInstanceEvaluator(cfg, dataset_name=dataset_name, output_dir=output_dir)
