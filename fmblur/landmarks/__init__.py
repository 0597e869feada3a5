"""Facial landmark sources behind one registry, chosen with `--landmarks` / the app's landmark menu."""

from fmblur.landmarks import detector_points  # noqa: F401  (registers itself)
from fmblur.landmarks.registry import LandmarkSource, create_landmark_source, landmark_source_names, register

__all__ = ["LandmarkSource", "create_landmark_source", "landmark_source_names", "register"]
