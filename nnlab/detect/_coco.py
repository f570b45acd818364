"""The bridge to the field's reference evaluation, pycocotools' COCOeval: nnlab's padded arrays
to COCO dictionaries (boxes as [x, y, width, height], masks as run-length encodings) and back to
named metrics. pycocotools comes with the optional extra: pip install -e ".[detect]".
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ._detector import Detections

_INSTALL = 'pip install -e ".[detect]"'
# COCOeval.stats, in its order
_STATS = (
    "map",
    "map50",
    "map75",
    "map_small",
    "map_medium",
    "map_large",
    "ar1",
    "ar10",
    "ar100",
    "ar_small",
    "ar_medium",
    "ar_large",
)


def _pycocotools() -> tuple[Any, Any, Any]:
    try:
        from pycocotools import mask
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError as e:
        raise ImportError(f"nnlab.detect's COCO evaluation needs pycocotools: {_INSTALL}") from e
    return COCO, COCOeval, mask


def _rle(masks: np.ndarray) -> list[dict]:
    """[d, h, w] bool -> COCO run-length encodings (counts as str, so the dicts are JSON)."""
    _, _, mask = _pycocotools()
    if masks.shape[0] == 0:
        return []
    encoded = mask.encode(np.asfortranarray(np.moveaxis(masks.astype(np.uint8), 0, -1)))
    return [{"size": r["size"], "counts": r["counts"].decode("ascii")} for r in encoded]


def _check_padded(boxes: ArrayLike, valid: ArrayLike, name: str) -> tuple[np.ndarray, np.ndarray]:
    boxes, valid = np.asarray(boxes, np.float64), np.asarray(valid, bool)
    if boxes.ndim != 3 or boxes.shape[-1] != 4 or valid.shape != boxes.shape[:2]:
        raise ValueError(
            f"{name}: expected boxes [n, k, 4] and valid [n, k], got shapes {boxes.shape} and {valid.shape}"
        )
    return boxes, valid


def _xywh(box: np.ndarray) -> list[float]:
    return [float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1])]


def coco_ground_truth(
    boxes: ArrayLike,
    labels: ArrayLike,
    valid: ArrayLike,
    *,
    height: int,
    width: int,
    masks: ArrayLike | None = None,
    class_names: Sequence[str] | None = None,
) -> dict:
    """A COCO data set dict from padded ground truth: boxes [n, k, 4] (x1, y1, x2, y2), labels [n, k]
    in [0, C), valid [n, k], masks [n, k, height, width] bool or None.

    Image i gets id i + 1, class c category id c + 1 (COCO reserves id 0); an object's area is its
    mask's pixel count when masks are given, else its box's area.
    """
    checked = _check_padded(boxes, valid, "ground truth")
    boxes, valid = checked[0], checked[1]
    masks = None if masks is None else np.asarray(masks)
    labels = np.asarray(labels)
    num_classes = len(class_names) if class_names is not None else int(labels[valid].max(initial=0)) + 1
    names = list(class_names) if class_names is not None else [str(c) for c in range(num_classes)]
    annotations: list[dict[str, Any]] = []
    for i in range(boxes.shape[0]):
        idx = np.nonzero(valid[i])[0]
        rles = _rle(np.asarray(masks[i])[idx]) if masks is not None else [None] * len(idx)
        for j, rle in zip(idx, rles, strict=True):
            box = _xywh(boxes[i, j])
            ann = {
                "id": len(annotations) + 1,
                "image_id": i + 1,
                "category_id": int(labels[i, j]) + 1,
                "bbox": box,
                "area": box[2] * box[3],
                "iscrowd": 0,
            }
            if masks is not None:
                ann["segmentation"] = rle
                ann["area"] = float(masks[i][j].sum())
            annotations.append(ann)
    return {
        "info": {"description": "nnlab ground truth"},
        "images": [{"id": i + 1, "height": int(height), "width": int(width)} for i in range(boxes.shape[0])],
        "categories": [{"id": c + 1, "name": n} for c, n in enumerate(names)],
        "annotations": annotations,
    }


def coco_results(
    boxes: ArrayLike, scores: ArrayLike, labels: ArrayLike, valid: ArrayLike, *, masks: ArrayLike | None = None
) -> list[dict]:
    """COCO result dicts from padded detections: boxes [n, d, 4], scores [n, d], labels [n, d],
    valid [n, d], masks [n, d, height, width] bool or None (image i is id i + 1)."""
    checked = _check_padded(boxes, valid, "detections")
    boxes, valid = checked[0], checked[1]
    masks = None if masks is None else np.asarray(masks)
    scores, labels = np.asarray(scores, np.float64), np.asarray(labels)
    results = []
    for i in range(boxes.shape[0]):
        idx = np.nonzero(valid[i])[0]
        rles = _rle(np.asarray(masks[i])[idx]) if masks is not None else [None] * len(idx)
        for j, rle in zip(idx, rles, strict=True):
            res = {
                "image_id": i + 1,
                "category_id": int(labels[i, j]) + 1,
                "bbox": _xywh(boxes[i, j]),
                "score": float(scores[i, j]),
            }
            if rle is not None:
                res["segmentation"] = rle
            results.append(res)
    return results


def coco_evaluate(ground_truth: dict, results: list[dict], *, iou_type: str = "bbox") -> dict[str, float]:
    """COCOeval's twelve summary numbers by name: map (AP averaged over IoU 0.5:0.95), map50, map75,
    map_small/medium/large, ar1, ar10, ar100, ar_small/medium/large (-1 where COCO has no object
    to score, e.g. no large objects). iou_type: 'bbox' (boxes) or 'segm' (masks). No results
    at all score 0."""
    if iou_type not in ("bbox", "segm"):
        raise ValueError(f"iou_type: expected 'bbox' or 'segm', got {iou_type!r}")
    if iou_type == "segm" and results and "segmentation" not in results[0]:
        raise ValueError("results: iou_type 'segm' needs masks; pass masks to coco_results")
    coco, coco_eval, _ = _pycocotools()
    if not results:
        return {k: 0.0 for k in _STATS}
    with contextlib.redirect_stdout(io.StringIO()):  # COCOeval reports by printing
        gt = coco()
        gt.dataset = ground_truth
        gt.createIndex()
        evaluation = coco_eval(gt, gt.loadRes([dict(r) for r in results]), iou_type)
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return {k: float(v) for k, v in zip(_STATS, evaluation.stats, strict=True)}


def coco_scores(
    gt_boxes: ArrayLike,
    gt_labels: ArrayLike,
    gt_valid: ArrayLike,
    detections: Detections,
    *,
    height: int,
    width: int,
    gt_masks: ArrayLike | None = None,
    class_names: Sequence[str] | None = None,
) -> dict[str, dict[str, float]]:
    """A detector's `Detections` on n images scored against padded ground truth (gt_boxes [n, k, 4],
    gt_labels [n, k], gt_valid [n, k], gt_masks [n, k, height, width] bool or None):
    {'bbox': coco_evaluate's numbers for the boxes} plus 'segm' for the masks when both the
    detections and the ground truth have masks (detection masks pasted with `paste_masks`)."""
    from ._masks import paste_masks

    gt = coco_ground_truth(
        gt_boxes, gt_labels, gt_valid, height=height, width=width, masks=gt_masks, class_names=class_names
    )
    boxes, scores, labels, valid = (np.asarray(a) for a in detections[:4])
    out = {"bbox": coco_evaluate(gt, coco_results(boxes, scores, labels, valid))}
    if gt_masks is not None and detections.masks is not None:
        masks = np.asarray(paste_masks(detections.masks, detections.boxes, height, width))
        out["segm"] = coco_evaluate(gt, coco_results(boxes, scores, labels, valid, masks=masks), iou_type="segm")
    return out
