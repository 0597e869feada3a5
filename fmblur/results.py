"""The measured figures shown to users, read from the JSON that `fmblur eval` writes into docs/results/eval/
(each file carries its date, machine and commit). Nothing here is typed in: without those files the app
shows no figures."""

from __future__ import annotations

import json
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parents[1] / "docs" / "results" / "eval"
# Per-epoch histories of the shipped trained weights, copied there by each trainer's export step.
TRAINING_DIR = RESULTS_DIR.parent / "training"
# The privacy/utility sweep `fmblur eval privacy` wrote last (its --out folder by default).
PRIVACY_FILE = RESULTS_DIR / "privacy.json"
SPLIT_NAMES = {"fmd-val": "face-mask val", "wider-val": "WIDER val"}


def detector_provenance(metrics: dict, report: dict) -> dict:
    """When and where a detector's figures were measured: its own provenance in a report `fmblur eval --merge`
    put together from several runs, else the report's."""
    return metrics.get("provenance", report["provenance"])


def detector_summaries(results_dir: Path = RESULTS_DIR) -> dict[str, str]:
    """Detector name -> "recall 0.90 at <= 0.5 FP/image on face-mask val, 0.86 on WIDER val; 31 ms per photo
    (measured 2026-11-24 ...)" for every detector the eval files cover."""
    figures: dict[str, list[str]] = {}
    timing: dict[str, str] = {}
    for split, report in _reports(results_dir).items():
        label = SPLIT_NAMES[split]
        for name, metrics in report["detectors"].items():
            budget = metrics["at_fp_budget"]["recall@0.5"]
            figures.setdefault(name, []).append(f"{budget:.2f} on {label}")
            measured = detector_provenance(metrics, report)
            timing.setdefault(name, f"{metrics['ms_per_image']:.0f} ms per {label} photo ({measured['date']})")
    return {
        name: f"recall at <= 0.5 false positives per image {', '.join(parts)}; {timing[name]}"
        for name, parts in figures.items()
    }


def menu_labels(results_dir: Path = RESULTS_DIR) -> dict[str, str]:
    """Detector name -> how menus name it: "frcnn_vgg16 (face-mask val AP@.5 0.68)" for every detector the
    face-mask val report covers (what `fmblur eval` measured and committed, not what a trainer logged)."""
    report = _report("fmd-val", results_dir)
    if report is None:
        return {}
    return {
        name: f"{name} ({SPLIT_NAMES['fmd-val']} AP@.5 {metrics['AP@.5']:.2f})"
        for name, metrics in report["detectors"].items()
    }


def _report(split: str, results_dir: Path) -> dict | None:
    """What `fmblur eval` wrote for one val split, or None when it has not been run."""
    path = results_dir / f"{split}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _reports(results_dir: Path) -> dict[str, dict]:
    reports = {split: _report(split, results_dir) for split in SPLIT_NAMES}
    return {split: report for split, report in reports.items() if report is not None}


def measured_table(detector: str, results_dir: Path = RESULTS_DIR) -> str:
    """A markdown table of what `fmblur eval` measured for `detector` on each val split (empty if nothing)."""
    rows = []
    for split, report in _reports(results_dir).items():
        metrics = report["detectors"].get(detector)
        if metrics is None:
            continue
        budget = metrics["at_fp_budget"]
        measured = detector_provenance(metrics, report)
        rows.append(
            f"| {SPLIT_NAMES[split]} | {metrics['AP@.5']:.3f} "
            f"| {metrics['recall@0.5']:.3f} (t={metrics['threshold']:.2f}) "
            f"| {metrics['fp_per_image']:.2f} | {budget['recall@0.5']:.3f} | {metrics['ms_per_image']:.0f} "
            f"| {measured['date']}, {measured['commit']} |"
        )
    if not rows:
        return ""
    header = (
        "| split | AP@.5 | recall@0.5 | FP/image | recall at <= 0.5 FP/image | ms/image | measured |\n"
        "|---|---|---|---|---|---|---|"
    )
    return "\n".join([header, *rows])


def pr_curves(split: str, results_dir: Path = RESULTS_DIR) -> list[dict]:
    """Rows (detector, recall, precision) of every detector's precision-recall curve on `split`."""
    report = _report(split, results_dir)
    if report is None:
        return []
    return [
        {"detector": name, "recall": recall, "precision": precision}
        for name, metrics in report["detectors"].items()
        for recall, precision in zip(metrics["pr_curve"]["recall"], metrics["pr_curve"]["precision"], strict=True)
    ]


def training_curves(detector: str, training_dir: Path = TRAINING_DIR) -> tuple[list[dict], str]:
    """Rows (epoch, measure, value) of the per-epoch history of `detector`'s shipped weights, and a line
    saying which run and export they come from; ([], "") when no history was published for it."""
    path = training_dir / f"{detector}.json"
    if not path.is_file():
        return [], ""
    record = json.loads(path.read_text())
    rows = [
        {"epoch": row["epoch"], "measure": key, "value": value}
        for row in record["rows"]
        for key, value in row.items()
        if key not in ("epoch", "lr", "seconds")
    ]
    source = record["provenance"]
    line = f"run `{record['run']}`, exported {source['date']} on {source['machine']}, commit {source['commit']}"
    # where the run itself was elsewhere (a GPU machine), the record says so
    return rows, line + (f". {record['note']}" if record.get("note") else "")


PRIVACY_MEASURES = {
    "identified": "re-identified (rank-1)",
    "detector_recall": "detector recall on output",
    "landmark_nme": "landmark error (NME)",
}


def privacy_sweep(path: Path = PRIVACY_FILE) -> tuple[list[dict], str]:
    """Rows (kernel, measure, value) of the last `fmblur eval privacy` run, one line per measure and blur
    setting (mode, mask scale) against the kernel, and its provenance line; ([], "") before it ran."""
    if not path.is_file():
        return [], ""
    report = json.loads(path.read_text())
    rows = [
        {
            "kernel": row["kernel"],
            "measure": f"{label}, {row['mode']} x{row['mask_scale']:g}",
            "value": row[key],
        }
        for row in report["rows"]
        if row["kernel"]
        for key, label in PRIVACY_MEASURES.items()
        if row[key] is not None
    ]
    source = report.get("provenance", {})
    line = f"{', '.join(report['data'])}: measured {source.get('date', '?')}, commit {source.get('commit', '?')}"
    return rows, line
