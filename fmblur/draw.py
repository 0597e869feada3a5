"""Draw faces (box, score, landmarks) on a copy of an image, for the app's "detections" view."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from fmblur.face import Face

BOX_COLOR = (0, 255, 0)
KEPT_COLOR = (255, 140, 0)
LANDMARK_COLORS = {
    "left_eye": (255, 0, 0),
    "right_eye": (0, 0, 255),
    "nose": (255, 255, 0),
    "mouth_left": (255, 0, 255),
    "mouth_right": (0, 255, 255),
}


def draw_faces(image: np.ndarray, faces: Sequence[Face], kept: Sequence[Face] = ()) -> np.ndarray:
    """Hidden faces in green with their score; faces left visible by an identity selection in orange."""
    canvas = image.copy()
    thickness = max(1, round(max(image.shape[:2]) / 400))
    for face, color, prefix in [(f, BOX_COLOR, "") for f in faces] + [(f, KEPT_COLOR, "kept ") for f in kept]:
        x1, y1, x2, y2 = (int(round(v)) for v in face.box)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), color, thickness)
        label = f"{prefix}{face.score:.2f}"
        font_scale = 0.35 * thickness
        (text_w, text_h), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
        top = max(0, y1 - text_h - 4)
        cv2.rectangle(canvas, (x1, top), (x1 + text_w + 2, top + text_h + 4), color, -1)
        cv2.putText(canvas, label, (x1 + 1, top + text_h + 1), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (0, 0, 0), 1)
        for name, (x, y) in (face.landmarks or {}).items():
            color = LANDMARK_COLORS.get(name, (255, 255, 255))
            cv2.circle(canvas, (int(round(x)), int(round(y))), thickness + 1, color, -1)
    return canvas
