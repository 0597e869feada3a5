"""Several detectors on one photo, side by side: what each finds, how fast, and (for a photo with annotations)
which annotated faces it finds and misses. The app's Compare tab draws this; it holds no UI itself."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from fmblur.datasets import read_voc
from fmblur.draw import draw_faces
from fmblur.geometry import match_detections
from fmblur.pipeline import PipelineOptions, build_anonymizer
from fmblur.resources import examples_dir

HIT_COLOR = (0, 200, 255)  # annotated faces a detector found
MISS_COLOR = (255, 0, 0)  # annotated faces it missed


@dataclass
class DetectorPanel:
    """One detector's result on the photo."""

    detector: str
    faces: int
    detect_ms: float
    detections: np.ndarray  # the photo with its boxes (and ground truth hits / misses when known)
    anonymized: np.ndarray
    found: int | None = None  # annotated faces found (IoU >= 0.5), when the photo has annotations
    annotated: int | None = None

    @property
    def fps(self) -> float:
        return 1000.0 / max(self.detect_ms, 1e-3)


def ground_truth_for(path: str) -> np.ndarray | None:
    """The annotated face boxes of a photo that is one of the shipped examples (by file name), else None."""
    xml = examples_dir() / f"{Path(path).stem}.xml"
    return read_voc(xml).boxes if xml.is_file() else None


def draw_ground_truth(image: np.ndarray, boxes: np.ndarray, found: np.ndarray) -> np.ndarray:
    """Annotated faces on a copy: found ones in a thin outline, missed ones in a thick one."""
    canvas = image.copy()
    thickness = max(1, round(max(image.shape[:2]) / 400))
    for box, hit in zip(boxes.astype(int), found, strict=True):
        color, width = (HIT_COLOR, thickness) if hit else (MISS_COLOR, 3 * thickness)
        cv2.rectangle(canvas, tuple(box[:2]), tuple(box[2:]), color, width)
    return canvas


def compare(
    image: np.ndarray, detectors: Sequence[str], ground_truth: np.ndarray | None = None
) -> Iterator[DetectorPanel]:
    """Each detector (at its default threshold, default obfuscation) on `image`, one panel as each finishes."""
    for name in detectors:
        anonymizer = build_anonymizer(PipelineOptions.create(name))
        anonymizer.detector.load()  # loading is not detection time
        started = time.perf_counter()
        result = anonymizer(image)
        detect_ms = result.timings_ms.get("detect", (time.perf_counter() - started) * 1000)
        drawn = draw_faces(image, result.faces)
        found = annotated = None
        if ground_truth is not None:
            boxes = np.array([f.box for f in result.faces], np.float32).reshape(-1, 4)
            matched = match_detections(ground_truth, boxes, np.array([f.score for f in result.faces]), iou=0.5)
            drawn = draw_ground_truth(drawn, ground_truth, matched >= 0)
            found, annotated = int((matched >= 0).sum()), len(ground_truth)
        yield DetectorPanel(name, len(result.faces), detect_ms, drawn, result.image, found, annotated)
