"""The landmark model's crop geometry: a square around the face box, warped to CROP_SIZE, and back.

Used alike by training (`fmblur.train.landmarks`), the teachers' cache and inference (`resnet18_model`).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from fmblur.face import LANDMARK_NAMES

CROP_SIZE = 112
# The crop is a square of this many times the box's longer side, centred on the box: it keeps the
# whole face in view when a detector's box is tight or off-centre (training jitters the box the same way).
CROP_SCALE = 1.3
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


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(matrix)
