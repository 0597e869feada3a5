"""The one record every stage passes along: a face box with its score and optional landmarks."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

# Five-point landmark names, in the order RetinaFace, MTCNN and CenterFace emit them.
# "left"/"right" are as seen in the image (left_eye has the smaller x on a frontal face),
# which is the convention of those detectors' training data.
LANDMARK_NAMES: tuple[str, ...] = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


@dataclass(frozen=True)
class Face:
    """A detected face.

    box: (x1, y1, x2, y2) in float pixels of the image it was found in.
    score: detector confidence in [0, 1].
    landmarks: named points (x, y) in the same pixel frame, or None when unknown.
    """

    box: tuple[float, float, float, float]
    score: float
    landmarks: dict[str, tuple[float, float]] | None = field(default=None)

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    def with_landmarks(self, landmarks: dict[str, tuple[float, float]] | None) -> Face:
        return replace(self, landmarks=landmarks)

    def with_box(self, box) -> Face:
        """This face with another box (e.g. grown to cover motion); its landmarks stay where they were seen."""
        return replace(self, box=tuple(float(v) for v in box))

    def moved_to(self, box) -> Face:
        """This face moved to `box`: landmarks follow the box centre, so feature blur still has points."""
        old = np.asarray(self.box, np.float64)
        new = np.asarray(box, np.float64)
        dx, dy = (new[:2] + new[2:]) / 2 - (old[:2] + old[2:]) / 2
        landmarks = None
        if self.landmarks is not None:
            landmarks = {name: (x + float(dx), y + float(dy)) for name, (x, y) in self.landmarks.items()}
        return replace(self, box=tuple(float(v) for v in new), landmarks=landmarks)

    def clipped(self, width: int, height: int) -> Face:
        x1, y1, x2, y2 = self.box
        box = (
            float(np.clip(x1, 0, width)),
            float(np.clip(y1, 0, height)),
            float(np.clip(x2, 0, width)),
            float(np.clip(y2, 0, height)),
        )
        return replace(self, box=box)

    def to_json(self) -> dict:
        """The public JSON form (see README, "JSON output"): keep it stable."""
        record: dict = {
            "box": [round(float(v), 2) for v in self.box],
            "score": round(float(self.score), 4),
        }
        if self.landmarks is not None:
            record["landmarks"] = {k: [round(float(x), 2), round(float(y), 2)] for k, (x, y) in self.landmarks.items()}
        return record


def landmarks_from_array(points: np.ndarray) -> dict[str, tuple[float, float]]:
    """Name a (5, 2) array of points in LANDMARK_NAMES order."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return {name: (float(x), float(y)) for name, (x, y) in zip(LANDMARK_NAMES, points, strict=False)}
