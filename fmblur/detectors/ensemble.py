"""Several detectors at once, their boxes fused: the recall-first way to miss fewer faces.

Members are registry detectors, optionally run on the mirrored image (`centerface:mirror`), each with a
weight (`retinaface=0.4`). Every member reports its candidates down to a low floor; its raw scores become
precisions through the member's calibration map (fitted on the training splits, see `calibration.py`), so one
threshold means the same across members.

Fusion is weighted box fusion: candidates are grouped greedily (highest calibrated score first, IoU >= 0.55
with the group's seed, ensemble-boxes' recommended value), the fused box is the score-weighted mean of the
group, and the fused score is a noisy-or of each member's best weighted precision in the group,
1 - prod(1 - w_m p_m): members that agree on a face raise its score, and a face only one member sees keeps
that member's (weighted) precision. A final NMS at IoU 0.5 leaves one box per face. Each fused face keeps the
landmarks of its highest-scoring member detection that has them.

Why not `ensemble_boxes.weighted_boxes_fusion`: it offers no noisy-or score (its "max" loses agreement, its
"avg" punishes a face only one member sees), and its pure-Python loop took seconds per crowded photo at the
candidate floor. The grouping here is the same idea in numpy.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fmblur.detectors.base import Detector, RawDetections
from fmblur.detectors.calibration import CALIBRATION_FILE, PrecisionMap, calibration_path, load_calibration
from fmblur.detectors.registry import detector_class, register
from fmblur.detectors.views import mirrored
from fmblur.geometry import iou_matrix, nms

log = logging.getLogger(__name__)

# Chosen on the training splits (`fmblur train calibration`; README "Recall-first"): the best recall at <= 0.5
# false positives per image of the member sets and weights tried. MTCNN adds little there (0.838 vs 0.836
# without it) at half the ensemble's cost; it stays because missing a face costs more than time.
DEFAULT_MEMBERS: tuple[str, ...] = ("centerface", "centerface:mirror=0.8", "retinaface=0.4", "mtcnn=0.4")
FUSION_IOU = 0.55  # ensemble-boxes' recommended WBF threshold
ONE_BOX_PER_FACE_IOU = 0.5
# Members report candidates down to this raw score; the calibration decides what they are worth.
MEMBER_FLOOR = 0.05


@dataclass(frozen=True)
class MemberSpec:
    """One ensemble member: a registry detector, on the image or its mirror, with a weight in (0, 1]."""

    name: str
    mirror: bool = False
    weight: float = 1.0

    @property
    def key(self) -> str:
        """The member's name in the calibration file."""
        return f"{self.name}:mirror" if self.mirror else self.name

    @classmethod
    def parse(cls, text: str) -> MemberSpec:
        """`name`, `name:mirror`, optionally followed by `=weight` (e.g. `centerface:mirror=0.8`)."""
        spec, _, weight_text = text.partition("=")
        name, _, view = spec.partition(":")
        if view not in ("", "mirror"):
            raise ValueError(f"member {text!r}: the only view is ':mirror'")
        try:
            weight = float(weight_text) if weight_text else 1.0
        except ValueError:
            raise ValueError(f"member {text!r}: weight must be a number") from None
        if not 0.0 < weight <= 1.0:
            raise ValueError(f"member {text!r}: weight must be in (0, 1]")
        detector_class(name)  # unknown names fail here, with the list of known ones
        return cls(name=name, mirror=view == "mirror", weight=weight)


def calibrate(scores: np.ndarray, operating_threshold: float) -> np.ndarray:
    """Fallback for a member without a fitted precision map: its operating threshold becomes 0.5, 0 stays 0
    and 1 stays 1 (piecewise linear). Fit a map with `fmblur train calibration` for a real calibration."""
    scores = np.asarray(scores, np.float64)
    t = operating_threshold
    below = 0.5 * scores / t
    above = 0.5 + 0.5 * (scores - t) / (1.0 - t)
    return np.where(scores < t, below, above)


@dataclass
class MemberDetections:
    """One member's candidates on one image: boxes in pixels, calibrated scores, landmarks (NaN if none)."""

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray


def fuse(per_member: list[MemberDetections], weights: list[float], iou: float = FUSION_IOU) -> RawDetections:
    """Weighted box fusion with noisy-or scores (see the module docstring); one box per face."""
    counts = [len(m.scores) for m in per_member]
    if sum(counts) == 0:
        return RawDetections.empty(with_landmarks=True)
    boxes = np.concatenate([m.boxes.reshape(-1, 4) for m in per_member])
    scores = np.concatenate([m.scores.reshape(-1) for m in per_member])
    landmarks = np.concatenate([m.landmarks.reshape(-1, 5, 2) for m in per_member])
    member = np.repeat(np.arange(len(per_member)), counts)
    order = np.argsort(-scores, kind="stable")
    boxes, scores, landmarks, member = boxes[order], scores[order], landmarks[order], member[order]
    overlaps = iou_matrix(boxes, boxes)
    has_points = ~np.isnan(landmarks).any(axis=(1, 2))
    weight_of = np.asarray(weights, np.float64)
    used = np.zeros(len(scores), bool)
    fused_boxes, fused_scores, fused_landmarks = [], [], []
    for seed in range(len(scores)):
        if used[seed]:
            continue
        group = np.flatnonzero(~used & (overlaps[seed] >= iou))
        used[group] = True
        group_scores = scores[group]
        if group_scores.sum() > 0:
            fused_boxes.append((boxes[group] * group_scores[:, None]).sum(axis=0) / group_scores.sum())
        else:
            fused_boxes.append(boxes[seed])
        best_per_member = {}
        for index in group:  # group is in descending score order: the first hit per member is its best
            best_per_member.setdefault(member[index], scores[index])
        evidence = np.array([weight_of[m] * s for m, s in best_per_member.items()])
        fused_scores.append(1.0 - np.prod(1.0 - np.clip(evidence, 0.0, 1.0)))
        with_points = group[has_points[group]]
        fused_landmarks.append(landmarks[with_points[0]] if len(with_points) else np.full((5, 2), np.nan))
    fused = RawDetections(
        boxes=np.array(fused_boxes, np.float64).reshape(-1, 4),
        scores=np.array(fused_scores, np.float64),
        landmarks=np.array(fused_landmarks, np.float64).reshape(-1, 5, 2),
    )
    keep = nms(fused.boxes, fused.scores, ONE_BOX_PER_FACE_IOU)
    return RawDetections(boxes=fused.boxes[keep], scores=fused.scores[keep], landmarks=fused.landmarks[keep])


class CalibratedThreshold:
    """The fused threshold fitted on the training splits (0.5 if no calibration file is there), read from the
    class's calibration file when first asked for (not at import), as a class attribute like every detector's."""

    def __get__(self, instance: object, owner: type) -> float:
        return _calibrated_threshold(calibration_path(owner.calibration_file))


@functools.cache
def _calibrated_threshold(path: Path) -> float:
    try:
        return load_calibration(path).operating_threshold
    except (FileNotFoundError, ValueError):
        return 0.5


def _member_floor(raw: RawDetections, width: int, height: int) -> RawDetections:
    """A member's candidates at or above MEMBER_FLOOR, boxes clipped to the image."""
    keep = raw.scores >= MEMBER_FLOOR
    boxes = raw.boxes[keep].copy()
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
    landmarks = raw.landmarks[keep] if raw.landmarks is not None else None
    return RawDetections(boxes=boxes, scores=raw.scores[keep], landmarks=landmarks)


@register("ensemble")
class EnsembleDetector(Detector):
    """Weighted box fusion of several registry detectors (CenterFace and its mirror, RetinaFace, MTCNN by default).

    The default threshold is the one fitted with the default members on the training splits (<= 0.5 false
    positives per image there); with other members, check it with `fmblur eval`."""

    has_landmarks = True
    default_threshold = CalibratedThreshold()
    # Precision maps and fused threshold fitted for these members (`fmblur train calibration --target`).
    calibration_file = CALIBRATION_FILE
    source = "fusion of its members"
    licence = "that of its members"

    def __init__(
        self, threshold: float | None = None, members: tuple[str | MemberSpec, ...] = DEFAULT_MEMBERS, **view_options
    ) -> None:
        """`view_options` (scale, flip, tile, ...) apply to every member (see `ViewOptions`)."""
        super().__init__(threshold=threshold)
        specs = tuple(m if isinstance(m, MemberSpec) else MemberSpec.parse(m) for m in members)
        if len(specs) < 2:
            raise ValueError("an ensemble needs at least two members")
        if len({s.key for s in specs}) < len(specs):
            raise ValueError(f"ensemble members must differ: {[s.key for s in specs]}")
        self.members = specs
        self.detectors: dict[str, Detector] = {}
        for spec in specs:
            cls = detector_class(spec.name)
            if issubclass(cls, EnsembleDetector):
                raise ValueError(f"an ensemble cannot contain another ensemble ({spec.name})")
            if spec.name not in self.detectors:  # a member and its mirror share one model
                self.detectors[spec.name] = cls(threshold=MEMBER_FLOOR, **view_options)
        self.maps: dict[str, PrecisionMap | None] = {}

    @property
    def member_names(self) -> tuple[str, ...]:
        return tuple(spec.key for spec in self.members)

    def _load(self) -> None:
        for detector in self.detectors.values():
            detector.load()
        try:
            fitted = load_calibration(calibration_path(self.calibration_file)).maps
        except FileNotFoundError:
            fitted = {}
        for spec in self.members:
            self.maps[spec.key] = fitted.get(spec.key)
            if self.maps[spec.key] is None:
                log.warning("no precision map for ensemble member %s: its operating threshold counts as 0.5", spec.key)

    def runtime(self) -> str:
        """Each distinct runtime of the members (e.g. onnxruntime on CUDA for CenterFace, torch for MTCNN)."""
        return ", ".join(dict.fromkeys(f"{name}: {d.runtime()}" for name, d in self.detectors.items()))

    def share_cores(self, callers: int) -> bool:
        """Every member shares the cores, or none does (one member with a pool per process, MTCNN's torch, would
        take all the cores in each of the callers' runs)."""
        shared = all([detector.share_cores(callers) for detector in self.detectors.values()])  # each one asked
        if not shared:
            for detector in self.detectors.values():
                detector.share_cores(1)
        return shared

    def member_candidates(self, image: np.ndarray) -> dict[str, RawDetections]:
        """Each member's raw candidates at or above MEMBER_FLOOR, in the image's pixels (mirrors mapped back)."""
        self.load()
        height, width = image.shape[:2]
        mirror_image = None
        candidates = {}
        for spec in self.members:
            detector = self.detectors[spec.name]
            if spec.mirror:
                if mirror_image is None:
                    mirror_image = np.ascontiguousarray(image[:, ::-1])
                raw = mirrored(detector.detect_raw(mirror_image), width)
            else:
                raw = detector.detect_raw(image)
            candidates[spec.key] = _member_floor(raw, width, height)
        return candidates

    def detect_raw_around(self, image: np.ndarray, crops: list[tuple[int, int, int, int]]) -> RawDetections | None:
        if any(spec.mirror for spec in self.members):
            return None  # a crop's mirror is not on the mirrored image's stride grid
        candidates = {}
        for spec in self.members:
            raw = self.detectors[spec.name].detect_raw_around(image, crops)
            if raw is None:
                return None
            candidates[spec.key] = _member_floor(raw, image.shape[1], image.shape[0])
        return self.fuse_candidates(candidates)

    def calibrated(self, spec: MemberSpec, raw_scores: np.ndarray) -> np.ndarray:
        precision_map = self.maps.get(spec.key)
        if precision_map is not None:
            return precision_map(raw_scores)
        return calibrate(raw_scores, detector_class(spec.name).default_threshold)

    def fuse_candidates(self, candidates: dict[str, RawDetections]) -> RawDetections:
        per_member = []
        for spec in self.members:
            raw = candidates[spec.key]
            landmarks = raw.landmarks if raw.landmarks is not None else np.full((len(raw.scores), 5, 2), np.nan)
            per_member.append(MemberDetections(raw.boxes, self.calibrated(spec, raw.scores), landmarks))
        return fuse(per_member, [spec.weight for spec in self.members])

    def detect_raw(self, image: np.ndarray) -> RawDetections:
        return self.fuse_candidates(self.member_candidates(image))
