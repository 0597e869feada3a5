"""detect -> landmarks -> obfuscate: the one call the CLI, the app and the benchmarks share."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from fmblur.detectors import Detector, create_detector
from fmblur.detectors.base import as_rgb_uint8
from fmblur.device import selected_device
from fmblur.face import Face
from fmblur.landmarks import LandmarkSource, create_landmark_source
from fmblur.obfuscate import ObfuscationConfig, obfuscate

if TYPE_CHECKING:
    from fmblur.identity import FaceEmbedder
    from fmblur.identity.privacy import PrivacyReport
    from fmblur.identity.selection import IdentitySelection

# The thorough preset (fine-tuned CenterFace, CenterFace, fine-tuned RetinaFace, fused): missing a face leaks an
# identity. At its default threshold it finds more faces than the older 4-pass `recall-first` on both validation
# splits in 0.6-0.7 of its time (docs/results/finetune.md, docs/results/eval).
DEFAULT_DETECTOR = "thorough"
# The video default of the CLI and app: this detector on every frame and DEFAULT_DETECTOR (the key-frame detector)
# on every VIDEO_KEYFRAME_EVERY-th frame, its faces handed to the tracker and held to the next key frame. On the
# leak benchmark's clips (built from training photos) it leaked no more frames than DEFAULT_DETECTOR on every
# frame, at about three times its speed (docs/results/video-leaks.md). `anonymize_video` itself runs what its
# TrackingOptions say (no key frames unless asked).
VIDEO_DETECTOR = "fast"
VIDEO_KEYFRAME_EVERY = 10
DEFAULT_LANDMARKS = "detector"


@dataclass
class PipelineResult:
    """The anonymised image, the faces that were hidden, and per-stage wall times in milliseconds."""

    image: np.ndarray
    faces: list[Face]
    timings_ms: dict[str, float] = field(default_factory=dict)
    kept: list[Face] = field(default_factory=list)  # faces left visible by an identity selection
    privacy: PrivacyReport | None = None
    runtime: dict[str, str] = field(default_factory=dict)  # device asked for, and what ran each model

    @property
    def fps(self) -> float:
        total = self.timings_ms.get("total", 0.0)
        return 1000.0 / total if total > 0 else float("inf")

    def to_json(self) -> dict:
        """The public JSON record (README, "JSON output"): keep it stable."""
        record = {
            "faces": [face.to_json() for face in self.faces],
            "timings_ms": {stage: round(ms, 2) for stage, ms in self.timings_ms.items()},
            "runtime": self.runtime,
        }
        if self.kept:
            record["kept_faces"] = [face.to_json() for face in self.kept]
        if self.privacy is not None:
            record["privacy"] = self.privacy.to_json()
        return record


@dataclass(frozen=True)
class PipelineOptions:
    """Everything that decides how faces are found and hidden: the one record the CLI, the app, video, the
    benchmarks and the tests describe a pipeline with. `build_anonymizer` turns it into one."""

    detector: str = DEFAULT_DETECTOR
    # Detector keyword options (threshold, scale, upscale_to, flip, tile, members); a detector's defaults otherwise.
    detector_options: tuple[tuple[str, object], ...] = ()
    landmarks: str = DEFAULT_LANDMARKS
    obfuscation: ObfuscationConfig = field(default_factory=ObfuscationConfig)
    whom: str = "everyone"  # "everyone", "keep" (the reference people stay visible) or "only" (only they are hidden)
    references: tuple[str, ...] = ()  # reference photos for keep / only
    privacy_meter: bool = False

    def __post_init__(self) -> None:
        if self.whom not in ("everyone", "keep", "only"):
            raise ValueError(f"whom must be everyone, keep or only, got {self.whom!r}")
        if self.whom != "everyone" and not self.references:
            raise ValueError("Add at least one reference photo of the person to keep or hide.")

    @classmethod
    def create(cls, detector: str = DEFAULT_DETECTOR, **fields) -> PipelineOptions:
        """Options with detector keyword options given as a dict (`detector_options={"threshold": 0.5}`);
        options left as None take the detector's defaults."""
        options = {k: v for k, v in (fields.pop("detector_options", None) or {}).items() if v is not None}
        return cls(detector=detector, detector_options=tuple(sorted(options.items())), **fields)


def build_anonymizer(options: PipelineOptions) -> Anonymizer:
    """The pipeline the options describe (models load on first use; reference photos are embedded now)."""
    detector = create_detector(options.detector, **dict(options.detector_options))
    selection = None
    if options.whom != "everyone":
        from fmblur.identity.selection import build_selection  # dlib loads only when people are chosen

        selection = build_selection(options.whom, list(options.references), detector)
    privacy_meter = None
    if options.privacy_meter:
        from fmblur.identity import create_embedder

        privacy_meter = create_embedder("dlib")
    return Anonymizer(detector, options.landmarks, options.obfuscation, selection, privacy_meter)


class Anonymizer:
    """A configured pipeline in two stages, `find_faces` and `hide`, which video runs frame by frame.
    Detector models load once (on first use) and are shared process-wide."""

    def __init__(
        self,
        detector: Detector | str = DEFAULT_DETECTOR,
        landmarks: LandmarkSource | str = DEFAULT_LANDMARKS,
        obfuscation: ObfuscationConfig | None = None,
        selection: IdentitySelection | None = None,
        privacy_meter: FaceEmbedder | None = None,
        **detector_options,
    ) -> None:
        """selection: keep / hide only the people of reference photos; privacy_meter: an embedder to measure
        how recognisable each hidden face stays (fmblur.identity). `detector_options` apply to a detector
        given by name; a detector object already carries its own."""
        if isinstance(detector, str):
            detector = create_detector(detector, **detector_options)
        elif detector_options:
            raise ValueError(f"detector options {sorted(detector_options)} with a detector object: set them on it")
        self.detector = detector
        self.landmarks = create_landmark_source(landmarks) if isinstance(landmarks, str) else landmarks
        self.obfuscation = obfuscation if obfuscation is not None else ObfuscationConfig()
        self.selection = selection
        self.privacy_meter = privacy_meter

    def find_faces(self, image: np.ndarray, timings: StageTimer | None = None) -> list[Face]:
        """Stage 1: the faces in `image` (RGB uint8) with landmarks."""
        return self.find_faces_batch([image], timings)[0]

    def find_faces_batch(self, images: list[np.ndarray], timings: StageTimer | None = None) -> list[list[Face]]:
        """`find_faces` of each image, the detector running them as one batch where it can (frames of a video)."""
        timings = timings or StageTimer()
        found = self.detector.detect_batch(images)
        timings.lap("detect")
        found = [self.landmarks.apply(image, faces) for image, faces in zip(images, found, strict=True)]
        timings.lap("landmarks")
        return found

    def hide(
        self, image: np.ndarray, faces: list[Face], timings: StageTimer | None = None, measure: bool = True
    ) -> tuple[np.ndarray, PrivacyReport | None]:
        """Stage 2: `image` with `faces` hidden, and how recognisable they stay (with a privacy meter and
        `measure`). The input is not modified."""
        timings = timings or StageTimer()
        output = obfuscate(image, faces, self.obfuscation)
        timings.lap("obfuscate")
        report = None
        if self.privacy_meter is not None and measure:
            from fmblur.identity.privacy import measure_privacy

            report = measure_privacy(image, output, faces, self.privacy_meter)
            timings.lap("privacy")
        return output, report

    def runtime(self) -> dict[str, str]:
        """The device asked for, and what ran each model."""
        return {"device": selected_device(), "detector": self.detector.runtime(), "landmarks": self.landmarks.runtime()}

    def __call__(self, image: np.ndarray) -> PipelineResult:
        """Find every face in `image` (RGB uint8), add landmarks, hide the faces (all, or as the identity
        selection decides). The input is not modified."""
        image = as_rgb_uint8(image)
        timings = StageTimer()
        faces = self.find_faces(image, timings)
        hidden, kept = faces, []
        if self.selection is not None:
            decisions = self.selection.decide(image, faces)
            hidden = [face for face, decision in zip(faces, decisions, strict=True) if decision.hide]
            kept = [face for face, decision in zip(faces, decisions, strict=True) if not decision.hide]
            timings.lap("identity")
        output, report = self.hide(image, hidden, timings)
        return PipelineResult(
            image=output, faces=hidden, timings_ms=timings.total(), kept=kept, privacy=report, runtime=self.runtime()
        )


class StageTimer:
    """Wall time per pipeline stage in milliseconds, summed over calls (video adds every frame's)."""

    def __init__(self) -> None:
        self.started = self._tick = time.perf_counter()
        self.ms: dict[str, float] = {}

    def lap(self, stage: str) -> None:
        """The time since the previous lap counts for `stage`."""
        now = time.perf_counter()
        self.ms[stage] = self.ms.get(stage, 0.0) + (now - self._tick) * 1000
        self._tick = now

    def add(self, ms: dict[str, float]) -> None:
        """Add another timer's stage times (one kept on a worker thread) to this one's."""
        for stage, value in ms.items():
            self.ms[stage] = self.ms.get(stage, 0.0) + value

    def restart(self) -> None:
        """Time between stages (decoding, waiting) counts for no stage."""
        self._tick = time.perf_counter()

    def total(self) -> dict[str, float]:
        return {**self.ms, "total": (time.perf_counter() - self.started) * 1000}
