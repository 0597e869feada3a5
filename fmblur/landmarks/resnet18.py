"""The project's own landmark model: a ResNet18 regressing 5 points from a square crop around the face box.

The dissertation's stage 2. Trained here by `fmblur train landmarks` (distilled from RetinaFace and dlib,
see weights/README.md); the same crop geometry is used in training and inference.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import cv2
import numpy as np
import torch
import torchvision

from fmblur.device import resolved_device
from fmblur.face import LANDMARK_NAMES, Face
from fmblur.landmarks.registry import LandmarkSource, register
from fmblur.resources import verify_file, weights_path

WEIGHTS_FILE = "landmarks_resnet18.pt"
CROP_SIZE = 112
# The crop is a square of this many times the box's longer side, centred on the box: it keeps the
# whole face in view when a detector's box is tight or off-centre (training jitters the box the same way).
CROP_SCALE = 1.3
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
# Horizontal flip swaps image-left and image-right points.
FLIP_ORDER = [LANDMARK_NAMES.index(n) for n in ("right_eye", "left_eye", "nose", "mouth_right", "mouth_left")]


def crop_transform(box: Sequence[float], scale: float = CROP_SCALE, size: int = CROP_SIZE) -> np.ndarray:
    """2x3 affine matrix mapping image pixels to the square crop of `box` (side `scale` x longer side)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    side = max(x2 - x1, y2 - y1, 1.0) * scale
    factor = size / side
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    return np.array([[factor, 0, size / 2 - factor * cx], [0, factor, size / 2 - factor * cy]], np.float64)


def warp_crop(image: np.ndarray, matrix: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """The crop given by `matrix`; pixels outside the image repeat the border (a face at the frame edge)."""
    interpolation = cv2.INTER_AREA if matrix[0, 0] < 1 else cv2.INTER_LINEAR
    return cv2.warpAffine(image, matrix, (size, size), flags=interpolation, borderMode=cv2.BORDER_REPLICATE)


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    points = np.asarray(points, np.float64).reshape(-1, 2)
    return points @ matrix[:, :2].T + matrix[:, 2]


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(matrix)


def to_tensor(crops: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 RGB crops -> normalised (N, 3, H, W) float tensor."""
    array = (crops.astype(np.float32) / 255.0 - MEAN) / STD
    return torch.from_numpy(np.ascontiguousarray(array.transpose(0, 3, 1, 2)))


def build_model(points: int = len(LANDMARK_NAMES), weights_backbone: str | None = None) -> torch.nn.Module:
    """ResNet18 with a regression head: 2 x `points` outputs, crop coordinates divided by the crop size.

    weights_backbone="imagenet" starts from torchvision's ImageNet weights (downloaded; needs internet).
    """
    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1 if weights_backbone == "imagenet" else None
    model = torchvision.models.resnet18(weights=weights)
    model.fc = torch.nn.Linear(model.fc.in_features, 2 * points)
    return model


@functools.cache
def load_model(path: str | None = None, device: str = "cpu") -> tuple[torch.nn.Module, tuple[str, ...]]:
    """The shipped model (checked against weights/manifest.json) and the names of its points."""
    path = path or str(weights_path(WEIGHTS_FILE))
    verify_file("landmarks_resnet18", path)
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    names = tuple(checkpoint["point_names"])
    model = build_model(len(names))
    model.load_state_dict({k: v.float() for k, v in checkpoint["state_dict"].items()})
    return model.eval().to(device), names


@torch.inference_mode()
def predict_points(model: torch.nn.Module, image: np.ndarray, boxes: Sequence[Sequence[float]]) -> np.ndarray:
    """(N, P, 2) points in image pixels for N face boxes on an RGB uint8 image."""
    if len(boxes) == 0:
        return np.zeros((0, 0, 2))
    matrices = [crop_transform(box) for box in boxes]
    crops = np.stack([warp_crop(image, m) for m in matrices])
    device = next(model.parameters()).device
    output = model(to_tensor(crops).to(device)).cpu().numpy().reshape(len(boxes), -1, 2) * CROP_SIZE
    return np.stack([apply_affine(invert_affine(m), pts) for m, pts in zip(matrices, output, strict=False)])


@register("resnet18")
class ResNet18Landmarks(LandmarkSource):
    """The project's ResNet18 regression CNN on each face crop (weights/landmarks_resnet18.pt)."""

    def runtime(self) -> str:
        return f"torch {resolved_device()}"

    def apply(self, image: np.ndarray, faces: Sequence[Face]) -> list[Face]:
        if not faces:
            return []
        model, names = load_model(device=resolved_device())
        points = predict_points(model, np.ascontiguousarray(image), [face.box for face in faces])
        return [
            face.with_landmarks({name: (float(x), float(y)) for name, (x, y) in zip(names, pts, strict=False)})
            for face, pts in zip(faces, points, strict=False)
        ]
