"""`fmblur eval`: run detectors on a named split (or annotated folder) and report the metrics of
fmblur.metrics, as markdown, JSON and precision-recall curves.

Named splits (never trained or tuned on): `fmd-val` = face-mask images 240..299; `wider-val` = every 8th
image of the WIDER FACE subset by sorted path (fmblur.datasets.load_split).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from fmblur.datasets import load_split
from fmblur.detectors import create_detector, detector_class
from fmblur.image_io import read_image
from fmblur.metrics import (
    CANDIDATE_THRESHOLD,
    COVERED_ENOUGH,
    FP_BUDGET,
    Predictions,
    coco_metrics,
    coverage_metrics,
    operating_metrics,
    recall_at_fp_budget,
)
from fmblur.provenance import provenance, provenance_line
from fmblur.results import detector_provenance


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


def darkener(gamma: float) -> Callable[[np.ndarray], np.ndarray]:
    """A low-light copy maker: every pixel through the gamma curve (2.2 turns mid-grey 128 into 56)."""
    lookup = np.round(255 * (np.arange(256) / 255) ** gamma).astype(np.uint8)
    return lambda image: lookup[image]


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
    report = {"data": data_name, "images": len(data), "provenance": provenance(), "detectors": {}}
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


def _measured_apart(metrics: dict, report: dict) -> str:
    """A merged report's detectors measured in an earlier run say when."""
    source = detector_provenance(metrics, report)
    return "" if source == report["provenance"] else f" [{source['date']}, {source['commit']}]"


def markdown_table(report: dict) -> str:
    lines = [
        f"{report['data']} ({report['images']} images; {provenance_line(report['provenance'])})",
        "",
        "| detector | faces | recall@0.5 | recall@0.3 | FP/image | recall@0.5 at <=0.5 FP/image (threshold) "
        "| AP@.5 | AP@.75 | AP@[.5:.95] | ms/image |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, m in report["detectors"].items():
        lines.append(
            f"| {name}{_measured_apart(m, report)} (t={m['threshold']:.2f}) | {m['faces']} | {m['recall@0.5']:.3f} "
            f"| {m['recall@0.3']:.3f} "
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


def merged_report(report: dict, earlier: dict) -> dict:
    """`report` with the detectors of an earlier report on the same split that it did not measure again; each
    detector carries the provenance of the run that measured it."""
    if earlier.get("data") != report["data"] or earlier.get("images") != report["images"]:
        raise ValueError(f"cannot merge a report on {earlier.get('data')} into one on {report['data']}")
    detectors = {}
    for name, metrics in earlier["detectors"].items():
        if name not in report["detectors"]:
            detectors[name] = {"provenance": earlier["provenance"], **metrics}
    for name, metrics in report["detectors"].items():
        detectors[name] = {"provenance": report["provenance"], **metrics}
    return {**report, "detectors": detectors}


def save_report(report: dict, out_dir: Path, stem: str) -> tuple[Path, Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path, png_path = (out_dir / f"{stem}.{ext}" for ext in ("json", "md", "png"))
    json_path.write_text(json.dumps(report, indent=1))
    md_path.write_text(markdown_table(report) + "\n")
    plot_pr_curves(report, png_path)
    return json_path, md_path, png_path
