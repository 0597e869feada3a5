"""The landmark ResNet18 network (torch): building it, loading the shipped weights, predicting points.

Apart from `resnet18` (crop geometry and the registry entry) so that listing landmark sources imports no torch.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import torch
import torchvision

from fmblur.face import LANDMARK_NAMES
from fmblur.geometry import apply_affine
from fmblur.landmarks.crops import CROP_SIZE, crop_transform, invert_affine, warp_crop
from fmblur.resources import verify_file, weights_path

WEIGHTS_FILE = "landmarks_resnet18.pt"
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


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
