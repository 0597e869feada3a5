"""Several detectors at once, their boxes fused: the recall-first way to miss fewer faces.

Each member runs on its own (with its own scale logic and options), its scores are calibrated, and the
boxes are fused by weighted box fusion (the `ensemble-boxes` package). Fused scores take the best member's
calibrated score (`conf_type="max"`): a face only one member sees keeps its full score, since missing a
face costs more than a false positive. Each fused face keeps the landmarks of the member detection that
overlaps it most.

Calibration: every member has an operating threshold (its default) where it is about as trustworthy as the
others at theirs. Scores are mapped piecewise-linearly so that operating threshold becomes 0.5, 0 stays 0
and 1 stays 1: one ensemble threshold then means the same for every member.
"""

from __future__ import annotations

import numpy as np

from fmblur.detectors.base import Detector, RawDetections
from fmblur.detectors.registry import detector_class, register
from fmblur.eval.matching import iou_matrix

DEFAULT_MEMBERS: tuple[str, ...] = ("retinaface", "centerface", "mtcnn")
_FUSION_IOU = 0.55  # ensemble-boxes' recommended WBF threshold


def calibrate(scores: np.ndarray, operating_threshold: float) -> np.ndarray:
    """Member scores -> common scale where the member's operating threshold is 0.5."""
    scores = np.asarray(scores, np.float64)
    t = operating_threshold
    below = 0.5 * scores / t
    above = 0.5 + 0.5 * (scores - t) / (1.0 - t)
    return np.where(scores < t, below, above)


def uncalibrate(threshold: float, operating_threshold: float) -> float:
    """The member score that calibrates to `threshold` (so members can pre-filter their candidates)."""
    t = operating_threshold
    return 2.0 * threshold * t if threshold < 0.5 else t + (threshold - 0.5) * 2.0 * (1.0 - t)


@register("ensemble")
class EnsembleDetector(Detector):
    """Weighted box fusion of several registry detectors (RetinaFace, CenterFace, MTCNN by default)."""

    has_landmarks = True
    default_threshold = 0.5
    source = "fusion of its members"
    licence = "that of its members"

    def __init__(self, threshold: float | None = None, members: tuple[str, ...] = DEFAULT_MEMBERS, **options) -> None:
        super().__init__(threshold=threshold, **options)
        if len(members) < 2:
            raise ValueError("an ensemble needs at least two member detectors")
        self.member_names = tuple(members)
        self.members: list[Detector] = []
        for name in self.member_names:
            cls = detector_class(name)
            if issubclass(cls, EnsembleDetector):
                raise ValueError(f"an ensemble cannot contain another ensemble ({name})")
            self.members.append(cls(threshold=uncalibrate(self.threshold, cls.default_threshold), **options))

    def _load(self) -> None:
        for member in self.members:
            member.load()

    def _detect(self, image: np.ndarray, threshold: float) -> RawDetections:  # pragma: no cover - not used
        raise NotImplementedError("the ensemble fuses its members' detect_raw results")

    def detect_raw(self, image: np.ndarray) -> RawDetections:
        from ensemble_boxes import weighted_boxes_fusion

        height, width = image.shape[:2]
        scale = np.array([width, height, width, height], np.float64)
        per_member = []
        for member in self.members:
            raw = member.detect_raw(image)
            keep = raw.scores >= member.threshold
            boxes = np.clip(raw.boxes[keep] / scale, 0.0, 1.0)
            scores = calibrate(raw.scores[keep], type(member).default_threshold)
            landmarks = raw.landmarks[keep] if raw.landmarks is not None else np.full((int(keep.sum()), 5, 2), np.nan)
            per_member.append((boxes, scores, landmarks))
        if sum(len(boxes) for boxes, _, _ in per_member) == 0:
            return RawDetections.empty(with_landmarks=True)
        fused_boxes, fused_scores, _ = weighted_boxes_fusion(
            [boxes.tolist() for boxes, _, _ in per_member],
            [scores.tolist() for _, scores, _ in per_member],
            [[0] * len(boxes) for boxes, _, _ in per_member],
            iou_thr=_FUSION_IOU,
            skip_box_thr=0.0,
            conf_type="max",
        )
        fused_boxes = np.asarray(fused_boxes, np.float64).reshape(-1, 4) * scale
        return RawDetections(
            boxes=fused_boxes,
            scores=np.asarray(fused_scores, np.float64),
            landmarks=_best_landmarks(fused_boxes, per_member, scale),
        )


def _best_landmarks(fused: np.ndarray, per_member: list, scale: np.ndarray) -> np.ndarray:
    """For each fused box, the landmarks of the member detection overlapping it most (NaN if none has any)."""
    candidates = [(boxes * scale, landmarks) for boxes, _, landmarks in per_member if len(boxes)]
    all_boxes = np.concatenate([boxes for boxes, _ in candidates])
    all_landmarks = np.concatenate([landmarks for _, landmarks in candidates])
    has_points = ~np.isnan(all_landmarks).any(axis=(1, 2))
    overlaps = iou_matrix(fused, all_boxes)
    overlaps[:, ~has_points] = -1.0
    best = overlaps.argmax(axis=1)
    landmarks = all_landmarks[best].copy()
    landmarks[overlaps[np.arange(len(fused)), best] <= 0] = np.nan
    return landmarks
