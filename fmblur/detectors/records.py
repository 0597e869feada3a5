"""What a detector returns before its threshold: boxes, scores and landmarks in an array's pixels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class RawDetections:
    """Detections in the pixel frame of the array the model saw."""

    boxes: np.ndarray  # (N, 4) x1, y1, x2, y2
    scores: np.ndarray  # (N,)
    landmarks: np.ndarray | None = None  # (N, 5, 2) in LANDMARK_NAMES order, or None

    @staticmethod
    def empty(with_landmarks: bool) -> RawDetections:
        return RawDetections(
            boxes=np.zeros((0, 4), np.float32),
            scores=np.zeros((0,), np.float32),
            landmarks=np.zeros((0, 5, 2), np.float32) if with_landmarks else None,
        )
