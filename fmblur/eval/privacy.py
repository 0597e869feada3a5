"""`fmblur eval privacy`: how recognisable anonymised faces stay, next to how useful the output stays.

For every obfuscation setting (mode x kernel x mask scale) over the ground-truth faces of validation splits:
- matched: share of faces whose anonymised embedding is within the same-person threshold of the original;
- identified: share whose anonymised embedding is nearest to its own original among all the split's
  originals (a gallery of hundreds of people) and within the threshold: rank-1 re-identification;
- detector recall: share of faces a detector (RetinaFace) still finds in the output at IoU 0.5;
- landmark NME: landmark error on the output against the same model on the original.
Faces below the embedder's `min_face` are left out of the privacy columns (see fmblur.identity.privacy).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fmblur.datasets import AnnotatedImage, load_split
from fmblur.face import Face
from fmblur.geometry import match_detections, normalised_mean_error
from fmblur.identity import create_embedder
from fmblur.identity.embedder import measurable
from fmblur.image_io import read_image
from fmblur.landmarks import create_landmark_source
from fmblur.obfuscate import SIMILARITY_CHECKED_MODES, ObfuscationConfig, obfuscate
from fmblur.provenance import provenance

KERNELS = (5, 15, 25, 35, 45, 55, 65)
MASK_SCALES = (1.0, 1.3, 1.6)


def settings(kernels=KERNELS, mask_scales=MASK_SCALES, grains=()) -> list[ObfuscationConfig]:
    """Gaussian and feature blur at each kernel and mask scale, the relative default, mosaic and solid; and the
    relative Gaussian and feature blur with each grain (noise sigma) in `grains`. The fixed kernels are the blur
    alone (the dissertation's sweep): no similarity check adds noise where a face box stays like the original."""
    configs = [
        ObfuscationConfig(mode=mode, kernel=kernel, mask_scale=scale, max_similarity=1.0)
        for mode in ("gaussian", "feature")
        for scale in mask_scales
        for kernel in kernels
    ]
    configs += [ObfuscationConfig(mask_scale=scale) for scale in mask_scales]
    # The default without its similarity check, beside it.
    configs += [ObfuscationConfig(mask_scale=scale, max_similarity=1.0) for scale in mask_scales]
    configs += [ObfuscationConfig(mode="mosaic"), ObfuscationConfig(mode="solid")]
    for grain in grains:  # grain 0: the relative feature blur without grain, for comparison
        modes = ("gaussian", "feature") if grain > 0 else ("feature",)
        configs += [ObfuscationConfig(mode=mode, grain=grain) for mode in modes]
    return configs


def label(config: ObfuscationConfig) -> str:
    kernel = f"k{config.kernel}" if config.kernel else f"k{config.kernel_relative:g}x"
    if config.mode in ("mosaic", "solid"):
        kernel = f"{config.mosaic_blocks} blocks" if config.mode == "mosaic" else "-"
    grain = f" grain {config.grain:g}" if config.grain else ""
    unchecked = config.kernel is None and config.max_similarity >= 1.0 and config.mode in SIMILARITY_CHECKED_MODES
    alone = " blur alone" if unchecked else ""
    return f"{config.mode} {kernel} s{config.mask_scale:g}{grain}{alone}"


@dataclass
class _Photo:
    record: AnnotatedImage
    image: np.ndarray
    faces: list[Face]  # ground truth with the landmark source's points (for feature blur)
    measured: list[int]  # indices of faces large enough to embed
    alignments: list
    original_points: np.ndarray  # (N, 5, 2) landmark source on the original


def _prepare(records, embedder, landmark_source, progress) -> tuple[list[_Photo], np.ndarray]:
    photos, gallery = [], []
    for record in records:
        image = np.ascontiguousarray(read_image(record.path)[0])
        boxes = [
            tuple(float(v) for v in box) for box, ignore in zip(record.boxes, record.ignore, strict=False) if not ignore
        ]
        faces = landmark_source.apply(image, [Face(box=box, score=1.0) for box in boxes])
        measured = [i for i, face in enumerate(faces) if measurable(face, embedder)]
        alignments = [embedder.align(image, faces[i]) for i in measured]
        gallery += [embedder.embed(image, a) for a in alignments]
        points = np.array([list(f.landmarks.values()) for f in faces]).reshape(len(faces), 5, 2)
        photos.append(_Photo(record, image, faces, measured, alignments, points))
        if progress is not None:
            progress()
    return photos, np.array(gallery).reshape(len(gallery), -1)


def evaluate_privacy(
    data: list[str],
    configs: list[ObfuscationConfig] | None = None,
    embedder_name: str = "dlib",
    landmarks: str = "resnet18",
    detector_name: str = "retinaface",
    progress_factory: Callable[[str, int], Callable] | None = None,
) -> dict:
    from fmblur.detectors import create_detector

    configs = configs or settings()
    measured = provenance()  # the code that runs is the tree at the start
    embedder = create_embedder(embedder_name)
    landmark_source = create_landmark_source(landmarks)
    detector = create_detector(detector_name)
    records = [r for name in data for r in load_split(name)]
    progress = progress_factory("originals", len(records)) if progress_factory else None
    photos, gallery = _prepare(records, embedder, landmark_source, progress)
    rows = []
    progress = progress_factory("settings", len(configs)) if progress_factory else None
    for config in configs:
        distances, identified, found, total, errors = [], [], 0, 0, []
        position = 0
        for _photo_index, photo in enumerate(photos):
            hidden = obfuscate(photo.image, photo.faces, config)
            for slot, alignment in enumerate(photo.alignments):
                vector = embedder.embed(hidden, alignment)
                all_distances = embedder.distance(gallery, vector)
                own = position + slot
                distances.append(all_distances[own])
                identified.append(int(np.argmin(all_distances)) == own and all_distances[own] < embedder.threshold)
            position += len(photo.alignments)
            detections = detector.detect(hidden)
            if photo.faces:
                truth = np.array([f.box for f in photo.faces])
                matched = match_detections(
                    truth, np.array([d.box for d in detections]).reshape(-1, 4), np.array([d.score for d in detections])
                )
                found += int((matched >= 0).sum())
                total += len(truth)
                after = landmark_source.apply(hidden, [f.with_landmarks(None) for f in photo.faces])
                points = np.array([list(f.landmarks.values()) for f in after]).reshape(len(after), 5, 2)
                errors += normalised_mean_error(points[photo.measured], photo.original_points[photo.measured]).tolist()
        distances = np.array(distances)
        rows.append(
            {
                "setting": label(config),
                "mode": config.mode,
                "kernel": config.kernel,
                "mask_scale": config.mask_scale,
                "grain": config.grain,
                "matched": float((distances < embedder.threshold).mean()) if len(distances) else None,
                "identified": float(np.mean(identified)) if identified else None,
                "median_distance": float(np.median(distances)) if len(distances) else None,
                "detector_recall": found / max(1, total),
                "landmark_nme": float(np.mean(errors)) if errors else None,
            }
        )
        if progress is not None:
            progress()
    return {
        "data": data,
        "provenance": measured,
        "embedder": embedder_name,
        "threshold": embedder.threshold,
        "min_face": embedder.min_face,
        "measured_faces": int(len(gallery)),
        "all_faces": int(sum(len(p.faces) for p in photos)),
        "landmarks": landmarks,
        "detector": detector_name,
        "rows": rows,
    }


def _cell(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def markdown_table(report: dict) -> str:
    lines = [
        f"Privacy and utility on {', '.join(report['data'])}: {report['measured_faces']} faces of at least "
        f"{report['min_face']:g} px embedded ({report['embedder']}, threshold {report['threshold']}), "
        f"{report['all_faces']} faces for detector recall; "
        f"landmarks {report['landmarks']}, detector {report['detector']}",
        "",
        "| setting | matched | identified (rank-1) | median distance | detector recall | landmark NME |",
        "|---|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        lines.append(
            f"| {row['setting']} | {_cell(row['matched'])} | {_cell(row['identified'])} | "
            f"{_cell(row['median_distance'])} | {_cell(row['detector_recall'])} | {_cell(row['landmark_nme'])} |"
        )
    return "\n".join(lines)


def plot(report: dict, path: Path) -> None:
    """Privacy (share still matched) against utility (detector recall), one line per mode and mask scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    groups: dict[str, list[dict]] = {}
    for row in report["rows"]:
        if row["kernel"]:
            groups.setdefault(f"{row['mode']} s{row['mask_scale']:g}", []).append(row)
    for name, rows in groups.items():
        kernels = [r["kernel"] for r in rows]
        axes[0].plot(kernels, [r["matched"] for r in rows], marker=".", label=name)
        axes[1].plot([r["matched"] for r in rows], [r["detector_recall"] for r in rows], marker=".", label=name)
    for row in report["rows"]:
        if not row["kernel"]:
            axes[1].scatter(row["matched"], row["detector_recall"], marker="x")
            axes[1].annotate(row["setting"], (row["matched"], row["detector_recall"]), fontsize=7)
    axes[0].set(xlabel="kernel", ylabel="share still matched to the original", title="privacy (lower is better)")
    axes[1].set(
        xlabel="share still matched (privacy risk)", ylabel="detector recall on output", title="utility vs risk"
    )
    for axis in axes:
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, format="png", dpi=100)
    plt.close(figure)
