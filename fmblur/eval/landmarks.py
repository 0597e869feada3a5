"""Landmark accuracy and the blur utility check (`fmblur eval landmarks`).

Accuracy: normalised mean error (mean point distance / inter-ocular distance) of each landmark source on the
ground-truth boxes of held-out faces (fmd-val, wider-val), against each teacher (RetinaFace, dlib) and
their mean, per mask class. Faces where the teachers disagree by more than the training tolerance are
reported separately: there the "truth" itself is uncertain.

Utility (the dissertation's tables 5.5 / 5.7): each face is hidden with a uniform Gaussian or a feature-based
blur of kernel 5..65 (windows from the source's own points on the original), then the source runs on the
hidden face; the error against the teachers' mean shows whether a later model can still find the landmarks.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from fmblur.face import Face, landmarks_from_array
from fmblur.geometry import normalised_mean_error
from fmblur.landmarks import create_landmark_source
from fmblur.landmarks.teachers import AGREEMENT, LandmarkSet, cached_faces
from fmblur.obfuscate import ObfuscationConfig, obfuscate

UTILITY_KERNELS = (5, 15, 25, 35, 45, 55, 65)


def source_points(source_name: str, faces: LandmarkSet, crops: np.ndarray | None = None) -> np.ndarray:
    """(N, 5, 2) points of a landmark source on each face's ground-truth box (NaN where it gives none)."""
    source = create_landmark_source(source_name)
    crops = faces.crops if crops is None else crops
    points = np.full((len(crops), 5, 2), np.nan)
    for index, (crop, box) in enumerate(zip(crops, faces.boxes, strict=False)):
        face = source.apply(crop, [Face(box=tuple(float(v) for v in box), score=1.0)])[0]
        if face.landmarks:
            points[index] = np.array(list(face.landmarks.values()))[:5]
    return points


def accuracy(source_name: str, faces: LandmarkSet) -> dict:
    """NME against each teacher and their mean, for agreeing faces by mask class and for all faces."""
    predicted = source_points(source_name, faces)
    references = {"retinaface": faces.teacher_retina, "dlib": faces.teacher_dlib, "teachers_mean": faces.target}
    agreeing = faces.agreement <= AGREEMENT
    report: dict = {"faces": int(len(predicted)), "agreeing_faces": int(agreeing.sum())}
    for name, reference in references.items():
        error = normalised_mean_error(predicted, reference)
        groups = {"all faces": np.ones(len(error), bool), "agreeing": agreeing}
        for label in sorted(set(faces.labels.tolist())):
            groups[f"agreeing, {label}"] = agreeing & (faces.labels == label)
        report[name] = {group: _mean(error[mask]) for group, mask in groups.items()}
    return report


def _mean(values: np.ndarray) -> float | None:
    values = values[np.isfinite(values)]
    return float(values.mean()) if len(values) else None


def utility(source_name: str, faces: LandmarkSet, kernels=UTILITY_KERNELS, progress: Callable | None = None) -> dict:
    """Mean landmark error (NME and pixels at a 100-px face) of a source on faces hidden by each kernel."""
    faces = faces.subset(faces.agreement <= AGREEMENT)
    original = source_points(source_name, faces)
    face_records = [
        Face(box=tuple(float(v) for v in box), score=1.0, landmarks=landmarks_from_array(points))
        for box, points in zip(faces.boxes, original, strict=False)
    ]
    scale = 100.0 / np.maximum(faces.boxes[:, 2] - faces.boxes[:, 0], faces.boxes[:, 3] - faces.boxes[:, 1])

    def errors(points: np.ndarray) -> dict:
        distance = np.linalg.norm(points - faces.target, axis=-1).mean(axis=-1)
        return {"nme": _mean(normalised_mean_error(points, faces.target)), "px_at_100": _mean(distance * scale)}

    rows = [{"kernel": 0, "uniform": errors(original), "feature": errors(original)}]
    for kernel in kernels:
        row: dict = {"kernel": kernel}
        for mode, key in (("gaussian", "uniform"), ("feature", "feature")):
            config = ObfuscationConfig(mode=mode, kernel=kernel)
            hidden = np.stack(
                [obfuscate(crop, [face], config) for crop, face in zip(faces.crops, face_records, strict=False)]
            )
            row[key] = errors(source_points(source_name, faces, hidden))
        rows.append(row)
        if progress is not None:
            progress()
    return {"faces": int(len(faces.crops)), "rows": rows}


def evaluate_landmarks(
    sources: list[str], splits: list[str], cache_dir: Path, progress_factory: Callable | None = None
) -> dict:
    faces = [cached_faces(split, cache_dir, progress_factory) for split in splits]
    merged = LandmarkSet(
        **{k: np.concatenate([getattr(f, k) for f in faces]) for k in LandmarkSet.__dataclass_fields__}
    )
    report: dict = {"splits": splits, "accuracy": {}, "utility": {}}
    for source in sources:
        report["accuracy"][source] = accuracy(source, merged)
        progress = progress_factory(f"{source} blur sweep", len(UTILITY_KERNELS)) if progress_factory else None
        report["utility"][source] = utility(source, merged, progress=progress)
    return report


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def markdown_tables(report: dict) -> str:
    lines = [f"Landmark NME (by inter-ocular distance) on {', '.join(report['splits'])}, ground-truth boxes", ""]
    for source, result in report["accuracy"].items():
        groups = list(result["teachers_mean"])
        lines += [f"**{source}** ({result['faces']} faces, {result['agreeing_faces']} where the teachers agree)", ""]
        lines += ["| against | " + " | ".join(groups) + " |", "|---" * (len(groups) + 1) + "|"]
        for reference in ("teachers_mean", "retinaface", "dlib"):
            lines.append(f"| {reference} | " + " | ".join(_cell(result[reference][g]) for g in groups) + " |")
        lines.append("")
    lines += ["Landmark error after hiding the face (agreeing faces; NME, and mean px error at a 100-px face)", ""]
    for source, result in report["utility"].items():
        lines += [
            f"**{source}** ({result['faces']} faces)",
            "",
            "| kernel | uniform NME | uniform px | feature NME | feature px |",
            "|---|---|---|---|---|",
        ]
        for row in result["rows"]:
            kernel = "none" if row["kernel"] == 0 else str(row["kernel"])
            u, f = row["uniform"], row["feature"]
            lines.append(
                f"| {kernel} | {_cell(u['nme'])} | {_cell(u['px_at_100'])} "
                f"| {_cell(f['nme'])} | {_cell(f['px_at_100'])} |"
            )
        lines.append("")
    return "\n".join(lines)
