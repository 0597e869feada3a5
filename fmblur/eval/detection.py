"""Evaluate detectors on annotated faces: recall at the operating threshold, false positives, COCO AP,
recall by face size, mask class and WIDER flags, precision-recall curves.

Named splits (never trained or tuned on): `fmd-val` = face-mask images 240..299; `wider-val` = every 8th
image of the WIDER FACE subset by sorted path. WIDER's `invalid` faces count neither as misses nor as
false positives (COCO's iscrowd).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fmblur.datasets import AnnotatedImage, read_voc, read_wider
from fmblur.detectors import create_detector, detector_class
from fmblur.eval.matching import match_detections
from fmblur.image_io import read_image

DATA_ROOT = Path(os.environ.get("FMBLUR_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))
SIZE_BUCKETS = (("tiny <16", 0, 16), ("small 16-32", 16, 32), ("medium 32-96", 32, 96), ("large >=96", 96, 1e9))
# Detectors run once at this low threshold, so AP and curves see every candidate; operating-threshold
# figures then keep the scores at or above each detector's own threshold.
CANDIDATE_THRESHOLD = 0.05
# The recall-first goal: more recall than any single detector at no more than this many false positives.
FP_BUDGET = 0.5


def load_split(name: str, data_root: Path = DATA_ROOT) -> list[AnnotatedImage]:
    """A named split, or a folder of Pascal VOC XMLs, or a WIDER FACE txt (its images beside it in images/)."""
    fmd = data_root / "face_mask_detection"
    wider = data_root / "wider_face_train_subset"
    if name in ("fmd-val", "fmd-train"):
        numbers = range(240, 300) if name == "fmd-val" else range(0, 240)
        return [read_voc(fmd / "annotations" / f"maksssksksss{n}.xml", fmd / "images") for n in numbers]
    if name in ("wider-val", "wider-train"):
        records = sorted(
            read_wider(wider / "wider_face_train_bbx_gt_subset.txt", wider / "images"), key=lambda r: str(r.path)
        )
        return [r for i, r in enumerate(records) if (i % 8 == 0) == (name == "wider-val")]
    path = Path(name)
    if path.is_dir():
        return [read_voc(xml) for xml in sorted(path.glob("*.xml"))]
    if path.suffix == ".txt":
        return read_wider(path, path.parent / "images")
    raise ValueError(f"unknown data {name!r}: use fmd-val, wider-val, a folder of VOC XMLs or a WIDER txt")


@dataclass
class Predictions:
    boxes: list[np.ndarray] = field(default_factory=list)
    scores: list[np.ndarray] = field(default_factory=list)
    ms_per_image: float = 0.0


def run_detector(
    name: str, images: list[np.ndarray], options: dict | None = None, progress: Callable | None = None
) -> Predictions:
    detector = create_detector(name, threshold=CANDIDATE_THRESHOLD, **(options or {}))
    detector.load()
    predictions = Predictions()
    elapsed = 0.0
    for image in images:
        start = time.perf_counter()
        faces = detector.detect(image)
        elapsed += time.perf_counter() - start
        predictions.boxes.append(np.array([f.box for f in faces], np.float64).reshape(-1, 4))
        predictions.scores.append(np.array([f.score for f in faces], np.float64))
        if progress is not None:
            progress()
    predictions.ms_per_image = 1000 * elapsed / max(1, len(images))
    return predictions


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
            for flag in ("blur", "occlusion"):
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


def darkener(gamma: float) -> Callable[[np.ndarray], np.ndarray]:
    """A low-light copy maker: every pixel through the gamma curve (2.2 turns mid-grey 128 into 56)."""
    lookup = np.round(255 * (np.arange(256) / 255) ** gamma).astype(np.uint8)
    return lambda image: lookup[image]


# A detected face counts as hidden enough when the hidden region covers this share of its annotated box.
COVERED_ENOUGH = 0.95


def coverage_metrics(
    data: list[AnnotatedImage], predictions: Predictions, threshold: float, shapes: list[tuple[int, int]]
) -> dict:
    """Of the annotated faces a detection finds (IoU >= 0.3), how much of each annotated box the default
    obfuscation region of the detections at `threshold` covers, and how many stay under COVERED_ENOUGH:
    detected but not hidden enough."""
    from fmblur.face import Face
    from fmblur.obfuscate import ObfuscationConfig, coverage_mask

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


def recall_at_fp_budget(data: list[AnnotatedImage], predictions: Predictions, budget: float) -> dict:
    """The lowest threshold whose false positives per image stay within `budget`, and the recall there:
    detectors compared at the same false-positive rate, whatever their score scales."""
    best = {"threshold": 1.0, "recall@0.5": 0.0, "fp_per_image": 0.0}
    for threshold in np.round(np.arange(0.99, CANDIDATE_THRESHOLD - 1e-9, -0.01), 2):
        metrics = operating_metrics(data, predictions, float(threshold))
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


def evaluate(
    detectors: list[str],
    data_name: str,
    thresholds: dict[str, float] | None = None,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
    options: dict | None = None,
    progress_factory: Callable[[str, int], Callable] | None = None,
) -> dict:
    """Metrics for each detector on one split. `transform` (e.g. anonymisation) is applied to every image first."""
    data = load_split(data_name)
    images = [read_image(record.path)[0] for record in data]
    if transform is not None:
        images = [transform(image) for image in images]
    shapes = [image.shape[:2] for image in images]
    report = {"data": data_name, "images": len(data), "detectors": {}}
    for name in detectors:
        progress = progress_factory(name, len(images)) if progress_factory else None
        predictions = run_detector(name, images, options, progress)
        threshold = (thresholds or {}).get(name, detector_class(name).default_threshold)
        metrics = operating_metrics(data, predictions, threshold)
        metrics["at_fp_budget"] = recall_at_fp_budget(data, predictions, FP_BUDGET)
        metrics["coverage"] = coverage_metrics(data, predictions, threshold, shapes)
        coco, recall_points, precision = coco_metrics(data, predictions)
        metrics.update(coco)
        metrics["ms_per_image"] = predictions.ms_per_image
        metrics["pr_curve"] = {"recall": recall_points.tolist(), "precision": precision.tolist()}
        report["detectors"][name] = metrics
    return report


def markdown_table(report: dict) -> str:
    lines = [
        f"{report['data']} ({report['images']} images)",
        "",
        "| detector | faces | recall@0.5 | recall@0.3 | FP/image | recall@0.5 at <=0.5 FP/image (threshold) "
        "| AP@.5 | AP@.75 | AP@[.5:.95] | ms/image |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, m in report["detectors"].items():
        lines.append(
            f"| {name} (t={m['threshold']:.2f}) | {m['faces']} | {m['recall@0.5']:.3f} | {m['recall@0.3']:.3f} "
            f"| {m['fp_per_image']:.2f} | {m['at_fp_budget']['recall@0.5']:.3f} ({m['at_fp_budget']['threshold']:.2f}) "
            f"| {m['AP@.5']:.3f} | {m['AP@.75']:.3f} | {m['AP@[.5:.95]']:.3f} | {m['ms_per_image']:.0f} |"
        )
    lines += [
        "",
        f"detected faces (IoU >= 0.3) whose annotated box is less than {COVERED_ENOUGH:.0%} hidden:",
        "",
    ]
    lines += ["| detector | detected | mean share covered | under-covered |", "|---|---|---|---|"]
    for name, m in report["detectors"].items():
        c = m["coverage"]
        lines.append(f"| {name} | {c['detected']} | {c['mean_covered']:.3f} | {c['under_covered']} |")
    groups = sorted({g for m in report["detectors"].values() for g in m["recall_by_group"]})
    if groups:
        lines += ["", "recall@0.5 by group (faces):", ""]
        lines.append("| group | " + " | ".join(report["detectors"]) + " |")
        lines.append("|---" * (len(report["detectors"]) + 1) + "|")
        for group in groups:
            cells = []
            for m in report["detectors"].values():
                entry = m["recall_by_group"].get(group)
                cells.append(f"{entry['recall']:.3f} ({entry['faces']})" if entry else "-")
            lines.append(f"| {group} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_pr_curves(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 5))
    for name, m in report["detectors"].items():
        recall = np.asarray(m["pr_curve"]["recall"])
        precision = np.asarray(m["pr_curve"]["precision"])
        valid = precision >= 0
        axes.plot(recall[valid], precision[valid], label=f"{name} (AP@.5 {m['AP@.5']:.3f})")
    axes.set_xlabel("recall")
    axes.set_ylabel("precision")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.02)
    axes.set_title(f"IoU 0.5, {report['data']}")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower left", fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)


def save_report(report: dict, out_dir: Path, stem: str) -> tuple[Path, Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path, png_path = (out_dir / f"{stem}.{ext}" for ext in ("json", "md", "png"))
    json_path.write_text(json.dumps(report, indent=1))
    md_path.write_text(markdown_table(report) + "\n")
    plot_pr_curves(report, png_path)
    return json_path, md_path, png_path
