"""Camera motion between frames of a real crowd photo: a pan and zoom is measured, a cut is found, light
changing is not a cut."""

from __future__ import annotations

import cv2
import numpy as np

from fmblur.camera_motion import CameraMotion, moved_back, moved_on
from fmblur.image_io import read_image
from tests.conftest import EXAMPLES_DIR


def _view(photo: np.ndarray, left: float, zoom: float) -> np.ndarray:
    """A 640x360 view of the photo enlarged 2x and then by `zoom`, starting `left` px into it."""
    matrix = np.array([[2 * zoom, 0, -left], [0, 2 * zoom, -40]], np.float64)
    return cv2.warpAffine(photo, matrix, (640, 360), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def test_a_pan_and_zoom_is_measured_and_a_box_follows_it():
    photo, _ = read_image(EXAMPLES_DIR / "maksssksksss0.jpg")
    camera = CameraMotion()
    assert not camera.update(_view(photo, 40, 1.0)).cut
    motion = camera.update(_view(photo, 52, 1.03))  # 12 px right, 3 % closer
    assert not motion.cut
    # A point x of the first view is (x + 40) / 2 in the photo, so x' = 1.03 (x + 40) - 52 in the second.
    expected = np.array([[1.03, 0, 1.03 * 40 - 52], [0, 1.03, 1.03 * 40 - 40]])
    assert np.allclose(motion.matrix[:, :2], expected[:, :2], atol=0.01)
    assert np.allclose(motion.matrix[:, 2], expected[:, 2], atol=1.5)
    box = np.array([100.0, 80.0, 160.0, 150.0])
    assert np.allclose(moved_back(moved_on(box, motion), motion), box, atol=0.1)  # corners: a bounding box


def test_a_cut_is_found_and_light_coming_on_is_not_one():
    crowd, _ = read_image(EXAMPLES_DIR / "maksssksksss0.jpg")
    other, _ = read_image(EXAMPLES_DIR / "maksssksksss83.jpg")
    camera = CameraMotion()
    camera.update(_view(crowd, 40, 1.0))
    assert camera.update(_view(other, 40, 1.0)).cut
    camera = CameraMotion()
    dark = (_view(crowd, 40, 1.0) * 0.1).astype(np.uint8)
    camera.update(dark)
    assert not camera.update(_view(crowd, 40, 1.0)).cut
