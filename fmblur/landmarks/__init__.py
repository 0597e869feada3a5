"""Facial landmark sources behind one registry, chosen with `--landmarks` / the app's landmark menu."""

from fmblur.landmarks import detector_points, dlib68, resnet18  # noqa: F401  (each registers itself)
from fmblur.landmarks.registry import LandmarkSource, create_landmark_source, landmark_source_names, register

__all__ = ["LandmarkSource", "create_landmark_source", "landmark_source_names", "register"]
