"""Fit the ensemble's calibration on training splits: one precision map per member, then the fused threshold.

1. Every member (and mirror view) of the ensemble reports its candidates (raw score >= MEMBER_FLOOR) on each
   training image; candidates are saved every few images in the run folder, so an interrupted run resumes.
2. A candidate is a face if it matches a ground-truth face at IoU 0.5 (WIDER's invalid faces count as faces
   here: they are faces). Each member's precision map is fitted on its candidates.
3. The ensemble fuses the cached candidates with those maps; the operating threshold is the lowest one that
   keeps false positives within FP_BUDGET per training image.
Validation splits (fmd-val, wider-val) are never used here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from fmblur.atomic import atomic_target
from fmblur.datasets import AnnotatedImage, load_split
from fmblur.detectors.base import RawDetections
from fmblur.detectors.calibration import Calibration, PrecisionMap
from fmblur.detectors.ensemble import DEFAULT_MEMBERS, EnsembleDetector
from fmblur.geometry import match_detections
from fmblur.image_io import read_image
from fmblur.metrics import FP_BUDGET, Predictions, recall_at_fp_budget

log = logging.getLogger(__name__)
TRAINING_SPLITS = ("fmd-train", "wider-train")
_SAVE_EVERY = 20  # images between saves of the candidate cache


def training_images(splits: tuple[str, ...] = TRAINING_SPLITS, every: int = 4) -> list[AnnotatedImage]:
    """The named training splits; WIDER's (1,084 photos, slow for MTCNN on this CPU) thinned to every `every`-th."""
    records = []
    for split in splits:
        if split.endswith("-val"):
            raise ValueError(f"{split} is a validation split: calibration is fitted on training data only")
        data = load_split(split)
        records.extend(data[::every] if split.startswith("wider") else data)
    return records


def _save_candidates(path: Path, keys: list[str], done: list[dict[str, RawDetections]]) -> None:
    arrays: dict[str, np.ndarray] = {"images": np.array(len(done))}
    for key in keys:
        arrays[f"{key}/counts"] = np.array([len(c[key].scores) for c in done], np.int64)
        arrays[f"{key}/boxes"] = (
            np.concatenate([c[key].boxes.reshape(-1, 4) for c in done]) if done else np.zeros((0, 4))
        )
        arrays[f"{key}/scores"] = np.concatenate([c[key].scores for c in done]) if done else np.zeros(0)
    temporary = path.with_suffix(".part.npz")
    np.savez(temporary, **arrays)
    temporary.replace(path)  # a stop mid-write leaves the previous cache whole


def _load_candidates(path: Path, keys: list[str]) -> list[dict[str, RawDetections]]:
    if not path.is_file():
        return []
    with np.load(path, allow_pickle=False) as cache:
        if any(f"{key}/counts" not in cache for key in keys):
            raise ValueError(f"{path} was made with other members or passes; remove it or use another --out")
        count = int(cache["images"])
        done: list[dict[str, RawDetections]] = [{} for _ in range(count)]
        for key in keys:
            ends = np.cumsum(cache[f"{key}/counts"])
            starts = ends - cache[f"{key}/counts"]
            for index, (start, end) in enumerate(zip(starts, ends, strict=False)):
                done[index][key] = RawDetections(
                    boxes=cache[f"{key}/boxes"][start:end], scores=cache[f"{key}/scores"][start:end], landmarks=None
                )
    return done


def collect_candidates(
    candidates_of: Callable[[np.ndarray], dict[str, RawDetections]],
    keys: list[str],
    data: list[AnnotatedImage],
    cache_path: Path,
    progress: Callable | None = None,
) -> list[dict[str, RawDetections]]:
    """`candidates_of(image)` (one RawDetections per key: ensemble members, a detector's passes) on every
    image, resuming from (and saving to) `cache_path`."""
    done = _load_candidates(cache_path, keys)
    if done:
        log.info("resumed: candidates of %d of %d images already in %s", len(done), len(data), cache_path)
    for index in range(len(done), len(data)):
        image = read_image(data[index].path)[0]
        done.append(candidates_of(image))
        if (index + 1) % _SAVE_EVERY == 0 or index + 1 == len(data):
            _save_candidates(cache_path, keys, done)
        if progress is not None:
            progress()
    return done


def fit_calibration(
    ensemble: EnsembleDetector, data: list[AnnotatedImage], candidates: list[dict[str, RawDetections]], label: str
) -> tuple[Calibration, dict]:
    """Precision maps from the candidates, then the fused threshold at FP_BUDGET; also the recall figures."""
    maps = {}
    for key in ensemble.member_names:
        scores, is_face = [], []
        for record, per_member in zip(data, candidates, strict=False):
            raw = per_member[key]
            matched = match_detections(record.boxes, raw.boxes, raw.scores, iou=0.5)
            hits = np.zeros(len(raw.scores), bool)
            hits[matched[matched >= 0]] = True
            scores.append(raw.scores)
            is_face.append(hits)
        maps[key] = PrecisionMap.fit(np.concatenate(scores), np.concatenate(is_face))
    ensemble.maps = dict(maps)  # fusion needs only the maps, not the models
    fused = [ensemble.fuse_candidates(per_member) for per_member in candidates]
    predictions = Predictions(boxes=[f.boxes for f in fused], scores=[f.scores for f in fused])
    operating = recall_at_fp_budget(data, predictions, FP_BUDGET)
    report = {"ensemble": operating}
    for key in ensemble.member_names:
        single = Predictions(boxes=[c[key].boxes for c in candidates], scores=[c[key].scores for c in candidates])
        report[key] = recall_at_fp_budget(data, single, FP_BUDGET)
    return Calibration(maps=maps, operating_threshold=operating["threshold"], fitted_on=label), report


def calibrate_ensemble(
    out_dir: Path,
    target: Path,
    members: tuple[str, ...] = DEFAULT_MEMBERS,
    splits: tuple[str, ...] = TRAINING_SPLITS,
    wider_every: int = 4,
    progress_factory: Callable[[int], Callable] | None = None,
) -> dict:
    """The whole fit; writes the calibration JSON to `target` and returns the training-split figures."""
    data = training_images(splits, wider_every)
    ensemble = EnsembleDetector(members=members)
    out_dir.mkdir(parents=True, exist_ok=True)
    progress = progress_factory(len(data)) if progress_factory else None
    candidates = collect_candidates(
        ensemble.member_candidates, list(ensemble.member_names), data, out_dir / "candidates.npz", progress
    )
    label = f"{' + '.join(splits)} (WIDER: one photo in {wider_every}): {len(data)} photos; members {list(members)}"
    calibration, report = fit_calibration(ensemble, data, candidates, label)
    with atomic_target(target, suffix=".json") as temporary:
        temporary.write_text(calibration.to_json() + "\n")
    return report
