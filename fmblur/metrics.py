"""Detection metrics on annotated faces: recall at an operating threshold (by size, mask class and WIDER
flags), false positives per image, recall at a false-positive budget, COCO AP, and how much of each detected
face the obfuscation region covers. Used by `fmblur eval` and by the trainers alike.

WIDER's `invalid` faces count neither as misses nor as false positives (COCO's iscrowd).
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field

import numpy as np

from fmblur.datasets import AnnotatedImage
from fmblur.face import Face
from fmblur.geometry import match_detections
from fmblur.obfuscate import ObfuscationConfig, coverage_mask

SIZE_BUCKETS = (("tiny <16", 0, 16), ("small 16-32", 16, 32), ("medium 32-96", 32, 96), ("large >=96", 96, 1e9))
# Detectors run once at this low threshold, so AP and curves see every candidate; operating-threshold
# figures then keep the scores at or above each detector's own threshold.
CANDIDATE_THRESHOLD = 0.05
# The recall-first goal: more recall than any single detector at no more than this many false positives.
FP_BUDGET = 0.5


@dataclass
class Predictions:
    boxes: list[np.ndarray] = field(default_factory=list)
    scores: list[np.ndarray] = field(default_factory=list)
    ms_per_image: float = 0.0


def _size(boxes: np.ndarray) -> np.ndarray:
    return np.sqrt(np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None))


def operating_metrics(data: list[AnnotatedImage], predictions: Predictions, threshold: float) -> dict:
    """Recall at IoU 0.5 and 0.3, false positives per image, and recall per group, at `threshold`."""
    found = {0.5: 0, 0.3: 0}
    false_positives = total = 0
    groups: dict[str, list[int]] = {}

    def count(group: str, hit: bool) -> None:
        tally = groups.setdefault(group, [0, 0])
        tally[0] += int(hit)
        tally[1] += 1

    for record, boxes, scores in zip(data, predictions.boxes, predictions.scores, strict=False):
        keep = scores >= threshold
        boxes, scores = boxes[keep], scores[keep]
        cared = ~record.ignore
        total += int(cared.sum())
        for iou in (0.5, 0.3):
            matched = match_detections(record.boxes, boxes, scores, iou=iou)
            found[iou] += int(((matched >= 0) & cared).sum())
            if iou == 0.5:
                hits = matched >= 0
                used = set(matched[matched >= 0].tolist())
                false_positives += len(boxes) - len(used)
        sizes = _size(record.boxes)
        for index in np.flatnonzero(cared):
            hit = bool(hits[index])
            for label, low, high in SIZE_BUCKETS:
                if low <= sizes[index] < high:
                    count(f"size {label}", hit)
            if record.labels and record.labels[index] != "face":
                count(f"class {record.labels[index]}", hit)
            for flag in ("blur", "occlusion", "illumination"):
                if flag in record.attributes:
                    count(f"{flag} {int(record.attributes[flag][index])}", hit)
    return {
        "threshold": threshold,
        "faces": total,
        "recall@0.5": found[0.5] / max(1, total),
        "recall@0.3": found[0.3] / max(1, total),
        "fp_per_image": false_positives / max(1, len(data)),
        "recall_by_group": {k: {"recall": v[0] / v[1], "faces": v[1]} for k, v in sorted(groups.items())},
    }


# A detected face counts as hidden enough when the hidden region covers this share of its annotated box.
COVERED_ENOUGH = 0.95


def coverage_metrics(
    data: list[AnnotatedImage], predictions: Predictions, threshold: float, shapes: list[tuple[int, int]]
) -> dict:
    """Of the annotated faces a detection finds (IoU >= 0.3), how much of each annotated box the default
    obfuscation region of the detections at `threshold` covers, and how many stay under COVERED_ENOUGH:
    detected but not hidden enough."""

    config = ObfuscationConfig()
    shares = []
    for record, boxes, scores, shape in zip(data, predictions.boxes, predictions.scores, shapes, strict=True):
        keep = scores >= threshold
        matched = match_detections(record.boxes, boxes[keep], scores[keep], iou=0.3)
        found = np.flatnonzero((matched >= 0) & ~record.ignore)
        if len(found) == 0:
            continue
        hidden = coverage_mask(shape, [Face(box=tuple(b), score=1.0) for b in boxes[keep]], config)
        height, width = shape
        for index in found:
            x1, y1, x2, y2 = record.boxes[index]
            left, top = int(np.clip(np.floor(x1), 0, width)), int(np.clip(np.floor(y1), 0, height))
            right, bottom = int(np.clip(np.ceil(x2), 0, width)), int(np.clip(np.ceil(y2), 0, height))
            if right > left and bottom > top:
                shares.append(float(hidden[top:bottom, left:right].mean()))
    shares_array = np.asarray(shares)
    return {
        "detected": len(shares),
        "mean_covered": float(shares_array.mean()) if shares else float("nan"),
        "under_covered": int((shares_array < COVERED_ENOUGH).sum()),
    }


def descending_thresholds() -> list[float]:
    """The thresholds an operating point is searched among: 0.99 down to CANDIDATE_THRESHOLD in steps of 0.01."""
    return [float(t) for t in np.round(np.arange(0.99, CANDIDATE_THRESHOLD - 1e-9, -0.01), 2)]


def false_positives_per_photo(data: list[AnnotatedImage], predictions: Predictions, threshold: float) -> np.ndarray:
    """Each photo's false positives at `threshold` (detections matching no face at IoU 0.5), as
    `operating_metrics` counts them."""
    counts = []
    for record, boxes, scores in zip(data, predictions.boxes, predictions.scores, strict=True):
        keep = scores >= threshold
        matched = match_detections(record.boxes, boxes[keep], scores[keep], iou=0.5)
        counts.append(int(keep.sum()) - int((matched >= 0).sum()))
    return np.array(counts, np.float64)


def recall_at_fp_budget(data: list[AnnotatedImage], predictions: Predictions, budget: float) -> dict:
    """The lowest threshold whose false positives per image stay within `budget`, and the recall there:
    detectors compared at the same false-positive rate, whatever their score scales."""
    best = {"threshold": 1.0, "recall@0.5": 0.0, "fp_per_image": 0.0}
    for threshold in descending_thresholds():
        metrics = operating_metrics(data, predictions, threshold)
        if metrics["fp_per_image"] > budget:
            break
        best = {k: metrics[k] for k in ("threshold", "recall@0.5", "fp_per_image")}
    return best


def coco_metrics(data: list[AnnotatedImage], predictions: Predictions) -> tuple[dict, np.ndarray, np.ndarray]:
    """COCO AP@[.5:.95], AP@.5, AP@.75 (up to 1000 detections per image) and the IoU-0.5 PR curve."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, annotations, results = [], [], []
    for image_id, (record, boxes, scores) in enumerate(zip(data, predictions.boxes, predictions.scores, strict=False)):
        images.append({"id": image_id, "width": 1, "height": 1})
        for box, ignore in zip(record.boxes, record.ignore, strict=False):
            w, h = float(box[2] - box[0]), float(box[3] - box[1])
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": 1,
                    "iscrowd": int(ignore),
                    "bbox": [float(box[0]), float(box[1]), w, h],
                    "area": w * h,
                }
            )
        for box, score in zip(boxes, scores, strict=False):
            results.append(
                {
                    "image_id": image_id,
                    "category_id": 1,
                    "score": float(score),
                    "bbox": [float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1])],
                }
            )
    truth = COCO()
    truth.dataset = {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "face"}]}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress lines
        truth.createIndex()
        if not results:
            return {"AP@[.5:.95]": 0.0, "AP@.5": 0.0, "AP@.75": 0.0}, np.zeros(0), np.zeros(0)
        detections = truth.loadRes(results)
        evaluation = COCOeval(truth, detections, "bbox")
        evaluation.params.maxDets = [10, 100, 1000]
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    stats = evaluation.stats
    precision = evaluation.eval["precision"][0, :, 0, 0, -1]  # IoU 0.5, all recall points, all areas, 1000 dets
    return (
        {"AP@[.5:.95]": float(stats[0]), "AP@.5": float(stats[1]), "AP@.75": float(stats[2])},
        (evaluation.params.recThrs),
        precision,
    )
