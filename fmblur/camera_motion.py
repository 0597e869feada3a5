"""How the picture moved between consecutive video frames: the camera's pan, zoom and small rotation, and cuts.

A face the detector first finds in frame 120 may have been in the picture since frame 60. Carrying its box
back to those frames (`tracking.complete_plan`) needs to know where it was: with a moving camera that is
where the camera motion puts it, not where it was first seen. So the first reading of a video measures each
frame's motion against the previous frame, the way camera-motion compensation in trackers does it (BoT-SORT's
sparse optical flow): corners on a small grey copy, followed with pyramidal Lucas-Kanade, and a similarity
transform fitted by RANSAC (moving people are outliers to the background's motion). It costs a few ms a frame.

A cut (the picture changes as a whole, after the motion is undone) ends every carry-back: a face first seen
after a cut was not in the shots before it.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from fmblur.geometry import apply_affine

WORK_WIDTH = 320  # px: motion is measured on a copy this wide (translations scaled back to full size)
MIN_POINTS = 8  # fewer tracked corners than this: no reliable motion, taken as none
# Correlation between a frame and its motion-compensated predecessor below which the frame starts a new shot.
# Correlation, not difference: lights coming on or a camera's exposure change keep the picture's structure
# (a face sitting in the dark is carried back into it); a cut does not. Pans and people moving stay near 1.
CUT_CORRELATION = 0.4
FLAT_STD = 1.0  # grey levels: a frame this uniform shows nothing; going from or to one is a cut

IDENTITY = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


@dataclass(frozen=True)
class FrameMotion:
    """matrix: 2x3, maps the previous frame's pixels to this frame's. cut: this frame starts a new shot."""

    matrix: np.ndarray
    cut: bool = False


STILL = FrameMotion(IDENTITY)


class CameraMotion:
    """Feed frames in order; each call returns that frame's motion against the previous one."""

    def __init__(self) -> None:
        self._previous: np.ndarray | None = None

    def update(self, image: np.ndarray) -> FrameMotion:
        scale = min(1.0, WORK_WIDTH / image.shape[1])
        small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else image
        grey = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY) if small.ndim == 3 else small
        previous, self._previous = self._previous, grey
        if previous is None or previous.shape != grey.shape:
            return STILL
        matrix = _similarity(previous, grey)
        predicted = cv2.warpAffine(previous, matrix, (grey.shape[1], grey.shape[0]), borderMode=cv2.BORDER_REPLICATE)
        cut = _is_cut(predicted, grey)
        full = matrix.copy()
        full[:, 2] /= scale  # the linear part is the same at any scale; the shift is in small pixels
        return FrameMotion(IDENTITY if cut else full, cut)


def _similarity(previous: np.ndarray, current: np.ndarray) -> np.ndarray:
    corners = cv2.goodFeaturesToTrack(previous, maxCorners=200, qualityLevel=0.01, minDistance=8)
    if corners is None or len(corners) < MIN_POINTS:
        return IDENTITY.copy()
    moved, status, _ = cv2.calcOpticalFlowPyrLK(previous, current, corners, None)
    found = status.ravel() == 1
    if found.sum() < MIN_POINTS:
        return IDENTITY.copy()
    matrix, _ = cv2.estimateAffinePartial2D(corners[found], moved[found], method=cv2.RANSAC, ransacReprojThreshold=1.0)
    return IDENTITY.copy() if matrix is None else matrix


def _is_cut(predicted: np.ndarray, current: np.ndarray) -> bool:
    a, b = predicted.astype(np.float32).ravel(), current.astype(np.float32).ravel()
    a_std, b_std = float(a.std()), float(b.std())
    if a_std < FLAT_STD or b_std < FLAT_STD:
        return (a_std < FLAT_STD) != (b_std < FLAT_STD)
    correlation = float(((a - a.mean()) * (b - b.mean())).mean()) / (a_std * b_std)
    return correlation < CUT_CORRELATION


def moved_box(box: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """A box mapped by a 2x3 transform (its corners' bounding box)."""
    x1, y1, x2, y2 = box
    points = apply_affine(matrix, [[x1, y1], [x2, y1], [x1, y2], [x2, y2]])
    return np.concatenate([points.min(axis=0), points.max(axis=0)])


def moved_back(box: np.ndarray, motion: FrameMotion) -> np.ndarray:
    """Where a box of this frame was in the previous frame."""
    return moved_box(box, cv2.invertAffineTransform(motion.matrix))


def moved_on(box: np.ndarray, motion: FrameMotion) -> np.ndarray:
    """Where a box of the previous frame is in this one."""
    return moved_box(box, motion.matrix)
