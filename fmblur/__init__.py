"""fmblur: face anonymisation for people wearing face masks."""

from fmblur.face import LANDMARK_NAMES, Face

__version__ = "0.1.0"

__all__ = ["LANDMARK_NAMES", "Face", "__version__"]
