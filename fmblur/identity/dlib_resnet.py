"""dlib's ResNet face descriptor (128-d, 99.38 % on LFW at distance 0.6), aligned with its 5-point predictor."""

from __future__ import annotations

import numpy as np

from fmblur.dlib_models import face_recognition_model, rectangle, shape_predictor
from fmblur.face import Face
from fmblur.identity.embedder import FaceEmbedder, register


@register("dlib")
class DlibResNetEmbedder(FaceEmbedder):
    threshold = 0.6  # dlib's own same-person threshold

    def align(self, image: np.ndarray, face: Face):
        return shape_predictor("dlib_shape5")(image, rectangle(face.box))

    def embed(self, image: np.ndarray, alignment) -> np.ndarray:
        return np.array(face_recognition_model().compute_face_descriptor(image, alignment), np.float64)
