"""detect -> landmarks -> obfuscate: the one call the CLI, the app and the benchmarks share."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from fmblur.detectors import Detector, create_detector
from fmblur.detectors.base import as_rgb_uint8
from fmblur.face import Face
from fmblur.landmarks import LandmarkSource, create_landmark_source
from fmblur.obfuscate import ObfuscationConfig, obfuscate

# The recall-first preset (RetinaFace + CenterFace + MTCNN, fused): missing a face leaks an identity.
DEFAULT_DETECTOR = "recall-first"
DEFAULT_LANDMARKS = "detector"


@dataclass
class PipelineResult:
    """The anonymised image, the faces that were hidden, and per-stage wall times in milliseconds."""

    image: np.ndarray
    faces: list[Face]
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def fps(self) -> float:
        total = self.timings_ms.get("total", 0.0)
        return 1000.0 / total if total > 0 else float("inf")

    def to_json(self) -> dict:
        """The public JSON record (README, "JSON output"): keep it stable."""
        return {
            "faces": [face.to_json() for face in self.faces],
            "timings_ms": {stage: round(ms, 2) for stage, ms in self.timings_ms.items()},
        }


class Anonymizer:
    """A configured pipeline. Detector models load once (on first use) and are shared process-wide."""

    def __init__(
        self,
        detector: Detector | str = DEFAULT_DETECTOR,
        landmarks: LandmarkSource | str = DEFAULT_LANDMARKS,
        obfuscation: ObfuscationConfig | None = None,
        **detector_options,
    ) -> None:
        self.detector = create_detector(detector, **detector_options) if isinstance(detector, str) else detector
        self.landmarks = create_landmark_source(landmarks) if isinstance(landmarks, str) else landmarks
        self.obfuscation = obfuscation if obfuscation is not None else ObfuscationConfig()

    def __call__(self, image: np.ndarray) -> PipelineResult:
        return anonymize(image, self.detector, self.landmarks, self.obfuscation)


def anonymize(
    image: np.ndarray, detector: Detector, landmarks: LandmarkSource, obfuscation: ObfuscationConfig
) -> PipelineResult:
    """Find every face in `image` (RGB uint8), add landmarks, hide the faces. The input is not modified."""
    image = as_rgb_uint8(image)
    start = time.perf_counter()
    faces = detector.detect(image)
    detected = time.perf_counter()
    faces = landmarks.apply(image, faces)
    landmarked = time.perf_counter()
    output = obfuscate(image, faces, obfuscation)
    done = time.perf_counter()
    timings = {
        "detect": (detected - start) * 1000,
        "landmarks": (landmarked - detected) * 1000,
        "obfuscate": (done - landmarked) * 1000,
        "total": (done - start) * 1000,
    }
    return PipelineResult(image=output, faces=faces, timings_ms=timings)
