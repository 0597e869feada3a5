"""The project's own landmark model: a ResNet18 regressing 5 points from a square crop around the face box.

The dissertation's stage 2. Trained here by `fmblur train landmarks` (distilled from RetinaFace and dlib,
see weights/README.md); the same crop geometry (`crops`) is used in training and inference. The network is
`resnet18_model` (torch), imported only when the model runs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fmblur.device import resolved_device
from fmblur.face import Face
from fmblur.landmarks.registry import LandmarkSource, register


@register("resnet18")
class ResNet18Landmarks(LandmarkSource):
    """The project's ResNet18 regression CNN on each face crop (weights/landmarks_resnet18.pt)."""

    def runtime(self) -> str:
        return f"torch {resolved_device()}"

    def apply(self, image: np.ndarray, faces: Sequence[Face]) -> list[Face]:
        if not faces:
            return []
        from fmblur.landmarks.resnet18_model import load_model, predict_points  # torch: only when it runs

        model, names = load_model(device=resolved_device())
        points = predict_points(model, np.ascontiguousarray(image), [face.box for face in faces])
        return [
            face.with_landmarks({name: (float(x), float(y)) for name, (x, y) in zip(names, pts, strict=False)})
            for face, pts in zip(faces, points, strict=False)
        ]
