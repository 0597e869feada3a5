"""Landmark targets distilled from two teachers, and the face crops they belong to.

There are no human landmark labels for masked faces here. Each annotated face (ground-truth box) gets
RetinaFace's 5 points (the detection matching the box) and dlib's 68 points reduced to 5 (run on that same
detection box, the kind of box dlib expects). A face is kept only where the teachers agree: mean point
distance at most `AGREEMENT` x the inter-ocular distance. The target is the teachers' mean.

Faces are stored as context crops (a square of CONTEXT_SCALE x the box's longer side, CONTEXT_SIZE px),
so training can jitter the box and re-crop without reading the photos again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fmblur.datasets import AnnotatedImage, load_split
from fmblur.geometry import apply_affine, inter_ocular, match_detections
from fmblur.image_io import read_image
from fmblur.landmarks.crops import crop_transform, warp_crop
from fmblur.landmarks.dlib68 import predict_68, reduce_68_to_5

MIN_FACE = 20  # px, shorter side of the ground-truth box: below this the teachers' points are guesses
TEACHER_IOU = 0.4  # a RetinaFace detection belongs to a ground-truth face at this IoU
TEACHER_THRESHOLD = 0.3
AGREEMENT = 0.25  # mean teacher distance / inter-ocular distance; measured median 0.18 on face-mask train
CONTEXT_SCALE = 2.0
CONTEXT_SIZE = 160


@dataclass
class LandmarkSet:
    """Faces as context crops with points in crop pixels.

    crops (N, S, S, 3) uint8; boxes (N, 4) ground-truth boxes in crop pixels; teacher_retina, teacher_dlib,
    target (N, 5, 2) in crop pixels; agreement (N,) teacher disagreement / inter-ocular distance; labels
    (N,) mask class; sources (N,) "photo path#face index".
    """

    crops: np.ndarray
    boxes: np.ndarray
    teacher_retina: np.ndarray
    teacher_dlib: np.ndarray
    agreement: np.ndarray
    labels: np.ndarray
    sources: np.ndarray

    @property
    def target(self) -> np.ndarray:
        return (self.teacher_retina + self.teacher_dlib) / 2

    def subset(self, keep: np.ndarray) -> LandmarkSet:
        return LandmarkSet(**{name: getattr(self, name)[keep] for name in self.__dataclass_fields__})

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, **{name: getattr(self, name) for name in self.__dataclass_fields__})

    @classmethod
    def load(cls, path: Path) -> LandmarkSet:
        with np.load(path, allow_pickle=False) as data:
            return cls(**{name: data[name] for name in cls.__dataclass_fields__})


def collect_faces(records: list[AnnotatedImage], progress: Callable[[], None] | None = None) -> LandmarkSet:
    """Both teachers' points for every ground-truth face of `records` that RetinaFace finds (all of them, agreeing
    or not: filter with `agreement`)."""
    from fmblur.detectors import create_detector

    teacher = create_detector("retinaface", threshold=TEACHER_THRESHOLD)
    rows: dict[str, list] = {name: [] for name in LandmarkSet.__dataclass_fields__}
    for record in records:
        image = read_image(record.path)[0]
        faces = teacher.detect(image)
        if progress is not None:
            progress()
        if not faces or len(record.boxes) == 0:
            continue
        matched = match_detections(
            record.boxes, np.array([f.box for f in faces]), np.array([f.score for f in faces]), TEACHER_IOU
        )
        for index, detection in enumerate(matched):
            box = record.boxes[index]
            if detection < 0 or min(box[2] - box[0], box[3] - box[1]) < MIN_FACE or record.ignore[index]:
                continue
            face = faces[detection]
            if face.landmarks is None:
                continue
            retina = np.array(list(face.landmarks.values()), np.float64)
            dlib5 = reduce_68_to_5(predict_68(image, face.box))
            distance = max(float(inter_ocular(retina)), 1.0)
            matrix = crop_transform(box, CONTEXT_SCALE, CONTEXT_SIZE)
            corners = apply_affine(matrix, box.reshape(2, 2)).reshape(4)
            rows["crops"].append(warp_crop(image, matrix, CONTEXT_SIZE))
            rows["boxes"].append(corners)
            rows["teacher_retina"].append(apply_affine(matrix, retina))
            rows["teacher_dlib"].append(apply_affine(matrix, dlib5))
            rows["agreement"].append(float(np.linalg.norm(retina - dlib5, axis=1).mean()) / distance)
            rows["labels"].append(record.labels[index] if record.labels else "face")
            rows["sources"].append(f"{record.path.name}#{index}")
    if not rows["crops"]:
        raise ValueError("no face with teacher landmarks in these images")
    return LandmarkSet(
        crops=np.stack(rows["crops"]),
        boxes=np.array(rows["boxes"], np.float32),
        teacher_retina=np.array(rows["teacher_retina"], np.float32),
        teacher_dlib=np.array(rows["teacher_dlib"], np.float32),
        agreement=np.array(rows["agreement"], np.float32),
        labels=np.array(rows["labels"]),
        sources=np.array(rows["sources"]),
    )


def cached_faces(
    split: str, cache_dir: Path, progress_factory: Callable[[str, int], Callable] | None = None
) -> LandmarkSet:
    """collect_faces for a named split (see fmblur.datasets.load_split), cached in cache_dir/<split>.npz."""

    path = cache_dir / f"{Path(split).name}.npz"
    if path.is_file():
        return LandmarkSet.load(path)
    records = load_split(split)
    progress = progress_factory(split, len(records)) if progress_factory else None
    faces = collect_faces(records, progress)
    faces.save(path)
    return faces
