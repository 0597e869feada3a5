"""Fit a Faster R-CNN variant's inference settings on training photos: the extra passes and the default threshold.

The variants are enlarged to 1280 px so that the face-mask photos' small faces become findable, which makes
their large faces larger than anything the 320-448-px training crops showed (VGG16 found 0 of 22 faces of
>= 96 px on unseen masked photos). An extra pass at a smaller size (longer side 448, 640 or 800 px) shows
those faces at a trained size; views are merged by NMS as every multi-view detector here does.

1. Every candidate pass runs once on every training photo (candidates at the evaluation's floor), cached in
   the run folder with the ensemble calibration's cache, so an interrupted run resumes.
2. Every combination of the 1280-px pass with a subset of the extra sides, each without and with nested-box
   suppression at each of `NESTED_SHARES` (a box mostly inside a higher-scoring one goes: these networks box
   the upper half of a large face beside the whole face), is scored on the cached candidates:
   recall at IoU 0.5 at no more than `fp_budget` false positives per photo (default 1, the bar of the issue
   "Compare backbones visually"), and the recall of large faces (>= 96 px) at that threshold. Combinations
   that find at least `large_floor` of the large faces compete (all of them when none does); the best recall
   wins, and one within `_TIE` of it with fewer passes (each pass costs time), or with the same passes and
   milder suppression, wins instead. Large faces are few
   (about 40 of 1,000 training faces), so without the floor a combination that misses them can still win.
3. The default threshold is the lowest that keeps false positives within the budget on these photos, with a
   margin for how few they are: within it in `FP_CONFIDENCE` of bootstrap resamples of the photos, not merely
   on average (the lowest threshold at the budget is over it on unseen photos about half the time; 40 photos'
   false-positive rate varies by about 0.2 per photo between resamples: frcnn_mobilenet_v3 on fmd-train-tune).
Validation splits are never used here; what was chosen on what goes into the variant's card.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from fmblur.atomic import atomic_target
from fmblur.datasets import AnnotatedImage, load_split
from fmblur.detectors import create_detector
from fmblur.detectors.frcnn import cards_path
from fmblur.detectors.records import RawDetections
from fmblur.detectors.views import merge_views, without_nested
from fmblur.metrics import (
    CANDIDATE_THRESHOLD,
    Predictions,
    coco_metrics,
    descending_thresholds,
    false_positives_per_photo,
    operating_metrics,
)
from fmblur.train.calibration import collect_candidates

# 320 px: on face-mask training photos the large faces score highest there (frcnn_resnet50: most >= 0.9 at 320
# and 448 px, under 0.5 at 1280).
CANDIDATE_SIDES = (800, 640, 448, 320)
# Shares of a box inside a higher-scoring one at which it goes, mildest first (0: off). On fmd-train-tune,
# frcnn_resnet50 with passes at 800 and 320 px, at the budget with its margin: large faces 10 -> 12 of 12 and
# recall 0.688 -> 0.708 (threshold 0.92 -> 0.86) at each of these shares.
NESTED_SHARES = (0.0, 0.9, 0.8, 0.7)
VARIANT_FP_BUDGET = 1.0  # false positives per training photo at the fitted default threshold
LARGE_FLOOR = 0.9  # share of large training faces a chosen combination must find
_BASE = "enlarged"  # the variant's own pass (enlarged to its upscale_to)
_TIE = 0.005  # recall differences below this do not pay for another pass
FP_CONFIDENCE = 0.9  # share of bootstrap resamples of the fitting photos that must stay within the FP budget
_RESAMPLES = 2000


def _key(side: int) -> str:
    return f"side{side}"


def fitting_photos(split: str = "fmd-train", every: int = 2) -> list[AnnotatedImage]:
    """Every `every`-th photo of a training split."""
    if split.endswith("-val"):
        raise ValueError(f"{split} is a validation split: settings are fitted on training data only")
    return load_split(split)[::every]


def threshold_within_budget(
    data: list[AnnotatedImage], predictions: Predictions, budget: float, confidence: float = FP_CONFIDENCE
) -> float:
    """The lowest threshold (in steps of 0.01) whose false positives per photo stay within `budget` in
    `confidence` of bootstrap resamples of the photos (the same resamples at every threshold)."""
    picks = np.random.default_rng(0).integers(0, len(data), (_RESAMPLES, len(data)))
    chosen = 1.0
    for threshold in descending_thresholds():
        per_photo = false_positives_per_photo(data, predictions, threshold)
        if np.mean(per_photo[picks].mean(axis=1) <= budget) < confidence:
            break
        chosen = threshold
    return chosen


def _scored(data: list[AnnotatedImage], merged: list[RawDetections], budget: float, confidence: float) -> dict:
    predictions = Predictions(boxes=[m.boxes for m in merged], scores=[m.scores for m in merged])
    threshold = threshold_within_budget(data, predictions, budget, confidence)
    at_threshold = operating_metrics(data, predictions, threshold)
    large = at_threshold["recall_by_group"].get("size large >=96", {}).get("recall")
    return {
        "threshold": threshold,
        "recall@0.5": at_threshold["recall@0.5"],
        "fp_per_image": at_threshold["fp_per_image"],
        "AP@.5": coco_metrics(data, predictions)[0]["AP@.5"],
        "large_recall": large,
    }


def fit_variant_settings(
    backbone: str,
    out_dir: Path,
    data: list[AnnotatedImage],
    sides: tuple[int, ...] = CANDIDATE_SIDES,
    budget: float = VARIANT_FP_BUDGET,
    progress_factory: Callable[[int], Callable] | None = None,
    large_floor: float = LARGE_FLOOR,
    confidence: float = FP_CONFIDENCE,
) -> dict:
    """Score every combination of passes on `data`; the chosen one (extra_sides, threshold) and all the rows."""
    if not 0.0 < confidence <= 1.0:
        raise ValueError(f"the false-positive confidence must be in (0, 1], got {confidence}")
    detector = create_detector(f"frcnn_{backbone}", threshold=CANDIDATE_THRESHOLD, extra_sides=()).load()
    keys = [_BASE, *(_key(side) for side in sides)]

    def passes(image: np.ndarray) -> dict[str, RawDetections]:
        found = {_BASE: detector.views.resized_pass(image, 1.0)}
        found.update({_key(side): detector.views.side_pass(image, side) for side in sides})
        return found

    out_dir.mkdir(parents=True, exist_ok=True)
    progress = progress_factory(len(data)) if progress_factory else None
    candidates = collect_candidates(passes, keys, data, out_dir / "candidates.npz", progress)
    rows = []
    for count in range(len(sides) + 1):
        for extra in itertools.combinations(sides, count):
            merged = [merge_views([c[_BASE], *(c[_key(side)] for side in extra)], False) for c in candidates]
            for share in NESTED_SHARES:
                kept = [without_nested(raw, share) for raw in merged]
                scored = _scored(data, kept, budget, confidence)
                rows.append({"extra_sides": list(extra), "nested_share": share, **scored})
    chosen = choose(rows, large_floor)
    return {
        "chosen": chosen,
        "rows": rows,
        "budget": budget,
        "confidence": confidence,
        "large_floor": large_floor,
        "photos": len(data),
    }


def choose(rows: list[dict], large_floor: float) -> dict:
    """The row with the best recall among those finding `large_floor` of the large faces (among those finding
    the most, when none does); within `_TIE` of the best, the one with the fewest passes, then the mildest
    nested-box suppression (none before a share of 0.9 before 0.8...)."""

    def large(row: dict) -> float:
        return 1.0 if row["large_recall"] is None else row["large_recall"]  # no large faces: nothing to miss

    eligible = [row for row in rows if large(row) >= large_floor]
    if not eligible:
        most = max(large(row) for row in rows)
        eligible = [row for row in rows if large(row) >= most]
    best = max(row["recall@0.5"] for row in eligible)
    return min(
        (row for row in eligible if row["recall@0.5"] >= best - _TIE),
        key=lambda row: (len(row["extra_sides"]), _harshness(row.get("nested_share", 0.0)), -row["recall@0.5"]),
    )


def _harshness(share: float) -> float:
    return 0.0 if not share else 2.0 - share  # off, then 0.9 (1.1), 0.8 (1.2)...


def write_to_card(backbone: str, fitted: dict, fitted_on: str, target: Path | None = None) -> Path:
    """Record the chosen settings in the variants' card file, where the detector reads its defaults."""
    target = target or cards_path()
    cards = json.loads(target.read_text()) if target.is_file() else {}
    chosen = fitted["chosen"]
    cards.setdefault(backbone, {})["inference"] = {
        "extra_sides": chosen["extra_sides"],
        "nested_share": chosen.get("nested_share", 0.0),
        "threshold": chosen["threshold"],
        "fp_budget": fitted["budget"],
        "fp_confidence": fitted.get("confidence"),
        "large_floor": fitted.get("large_floor"),
        "fitted_on": fitted_on,
        "training_recall": round(chosen["recall@0.5"], 4),
        "training_fp_per_image": round(chosen["fp_per_image"], 3),
        "training_large_recall": None if chosen["large_recall"] is None else round(chosen["large_recall"], 4),
    }
    with atomic_target(target, suffix=".json") as temporary:
        temporary.write_text(json.dumps(cards, indent=2) + "\n")
    return target
