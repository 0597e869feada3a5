"""dlib's model files from the `face-recognition-models` wheel, checked against weights/manifest.json.

The package's own __init__ imports `pkg_resources`, which current setuptools no longer ships, so the files are
located through the import system without running that module.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

from fmblur.resources import WeightsIntegrityError, verify_file

# manifest name -> file inside face_recognition_models/models/
MODEL_FILES = {
    "dlib_shape68": "shape_predictor_68_face_landmarks.dat",
    "dlib_shape5": "shape_predictor_5_face_landmarks.dat",
    "dlib_face_recognition": "dlib_face_recognition_resnet_model_v1.dat",
}
INSTALL_HINT = "pip install dlib-bin==20.0.1.post1 face-recognition-models==0.3.0"


def _import_dlib():
    try:
        import dlib
    except ImportError:
        raise RuntimeError(f"dlib is not installed: {INSTALL_HINT}") from None
    return dlib


def model_path(name: str) -> Path:
    """The verified path of one of dlib's model files."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise WeightsIntegrityError(f"dlib model files are not installed: {INSTALL_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / MODEL_FILES[name]
    return verify_file(name, path)


@functools.cache
def shape_predictor(name: str = "dlib_shape68"):
    """A loaded dlib shape predictor (68 or 5 points), shared process-wide."""
    return _import_dlib().shape_predictor(str(model_path(name)))


@functools.cache
def face_recognition_model():
    """dlib's ResNet face descriptor (128-d), shared process-wide."""
    return _import_dlib().face_recognition_model_v1(str(model_path("dlib_face_recognition")))


def rectangle(box: tuple[float, float, float, float]):
    """A dlib rectangle from a float (x1, y1, x2, y2) box."""
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    return _import_dlib().rectangle(x1, y1, x2, y2)
