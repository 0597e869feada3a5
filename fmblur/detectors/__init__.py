"""Face detectors behind one registry: `create_detector("retinaface", threshold=0.5)`."""

from fmblur.detectors import centerface, ensemble, frcnn, mtcnn, presets, retinaface  # noqa: F401  (each registers itself)
from fmblur.detectors.base import Detector, DetectorUnavailable, RawDetections
from fmblur.detectors.registry import (
    available_detector_names,
    create_detector,
    detector_class,
    detector_names,
    register,
)

__all__ = [
    "Detector",
    "DetectorUnavailable",
    "RawDetections",
    "available_detector_names",
    "create_detector",
    "detector_class",
    "detector_names",
    "register",
]
