"""dlib's 68-point shape predictor (iBUG 300-W trained), reduced to the pipeline's 5 named points."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fmblur.dlib_models import rectangle, shape_predictor
from fmblur.face import Face, landmarks_from_array
from fmblur.landmarks.registry import LandmarkSource, register

# 68-point indices (iBUG scheme, image-left first): eye contours 36-41 and 42-47, nose tip 30, mouth corners 48, 54.
LEFT_EYE = slice(36, 42)
RIGHT_EYE = slice(42, 48)
NOSE_TIP = 30
MOUTH_LEFT = 48
MOUTH_RIGHT = 54


def reduce_68_to_5(points68: np.ndarray) -> np.ndarray:
    """(68, 2) iBUG points -> (5, 2) in LANDMARK_NAMES order (eye centres, nose tip, mouth corners)."""
    return np.stack(
        [
            points68[LEFT_EYE].mean(axis=0),
            points68[RIGHT_EYE].mean(axis=0),
            points68[NOSE_TIP],
            points68[MOUTH_LEFT],
            points68[MOUTH_RIGHT],
        ]
    )


def predict_68(gray: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """dlib's 68 points (68, 2) for one face box on a uint8 grey or RGB image."""
    shape = shape_predictor("dlib_shape68")(gray, rectangle(box))
    return np.array([(shape.part(i).x, shape.part(i).y) for i in range(shape.num_parts)], np.float64)


@register("dlib68")
class Dlib68Landmarks(LandmarkSource):
    """dlib's 68-point regression-tree model on each face box; eye centres, nose tip and mouth corners kept."""

    def apply(self, image: np.ndarray, faces: Sequence[Face]) -> list[Face]:
        image = np.ascontiguousarray(image)
        return [
            face.with_landmarks(landmarks_from_array(reduce_68_to_5(predict_68(image, face.box)))) for face in faces
        ]
