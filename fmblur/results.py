"""The measured figures shown to users, read from the JSON that `fmblur eval` writes into docs/results/eval/
(each file carries its date, machine and commit). Nothing here is typed in: without those files the app
shows no figures."""

from __future__ import annotations

import json
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parents[1] / "docs" / "results" / "eval"
SPLIT_NAMES = {"fmd-val": "face-mask val", "wider-val": "WIDER val"}


def detector_summaries(results_dir: Path = RESULTS_DIR) -> dict[str, str]:
    """Detector name -> "recall 0.90 at <= 0.5 FP/image on face-mask val, 0.86 on WIDER val; 31 ms per photo
    (measured 2026-11-24 ...)" for every detector the eval files cover."""
    figures: dict[str, list[str]] = {}
    timing: dict[str, str] = {}
    for split, label in SPLIT_NAMES.items():
        path = results_dir / f"{split}.json"
        if not path.is_file():
            continue
        report = json.loads(path.read_text())
        for name, metrics in report["detectors"].items():
            budget = metrics["at_fp_budget"]["recall@0.5"]
            figures.setdefault(name, []).append(f"{budget:.2f} on {label}")
            timing.setdefault(
                name, f"{metrics['ms_per_image']:.0f} ms per {label} photo ({report['provenance']['date']})"
            )
    return {
        name: f"recall at <= 0.5 false positives per image {', '.join(parts)}; {timing[name]}"
        for name, parts in figures.items()
    }
