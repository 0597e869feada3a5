"""Landmark sources that need no model: the detector's own points, or none at all."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fmblur.face import Face
from fmblur.landmarks.registry import LandmarkSource, register


@register("detector")
class DetectorLandmarks(LandmarkSource):
    """Keep the 5 points the detector returned (RetinaFace, MTCNN, CenterFace); None for detectors without them."""

    def apply(self, image: np.ndarray, faces: Sequence[Face]) -> list[Face]:
        return list(faces)


@register("none")
class NoLandmarks(LandmarkSource):
    """Drop landmarks: feature-based blur then falls back to a uniform blur."""

    def apply(self, image: np.ndarray, faces: Sequence[Face]) -> list[Face]:
        return [face.with_landmarks(None) for face in faces]
