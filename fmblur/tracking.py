"""Temporal consistency for video: no face leaks between frames.

Every detection at the detector's threshold is always hidden; tracking only ever adds cover. ByteTrack
(Roboflow's `trackers` package) links detections across frames:
- its second association stage lets candidates below the threshold (down to `weak_ratio` x the threshold)
  continue a face's track, so a face that fades is still followed;
- a face that is only ever seen weakly is hidden once its weak candidates persist in the same place for
  `confirm_frames` frames in a row (a second ByteTrack over the weak candidates, which gives a track an id only
  then); a one-frame blip is not hidden;
- a track the detector loses is still covered for `hold_frames` frames, at its Kalman-predicted position;
- boxes of tracked faces are padded, and grown by the track's last motion so fast movement stays covered;
- boxes are smoothed (moving average) but never shrunk below the detection itself.

Video is known whole before it is written (`fmblur.video` reads it twice), so `complete_plan` then works
offline over every frame's regions: a track's gaps of up to `max_gap` frames are interpolated, and each track
is carried back up to `lookback` frames before its first frame (along the weak candidates there, else
extrapolated with its starting motion), so a face is hidden from the frame it came into view.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass, field

import numpy as np

from fmblur.face import Face
from fmblur.geometry import iou_matrix

# Weak-evidence tracks get ids from here on, apart from the ids of tracks of detections at the threshold.
WEAK_TRACK_IDS = 1_000_000
# A candidate continues a track backwards (or a weak track) when their boxes overlap this much.
CHAIN_IOU = 0.3


@dataclass(frozen=True)
class TrackingOptions:
    """Knobs of temporal consistency; the defaults suit 10-60 fps footage. Everything but `enabled` needs
    `enabled` (detections linked into tracks)."""

    enabled: bool = True
    hold_frames: int = 10  # frames a lost track stays covered at its predicted position
    pad: float = 0.1  # tracked boxes grow by this share of their size on every side
    smoothing: float = 0.6  # weight of the newest box in the moving average (1 = no smoothing)
    lookback: int = 15  # frames before a track's first frame in which it is also covered (0 = off)
    detect_every: int = 1  # run the detector on every k-th frame only, tracking in between (1 = every frame)
    weak_ratio: float = 0.5  # candidates scoring this share of the detector's threshold are weak evidence (1 = off)
    confirm_frames: int = 3  # frames in a row a weak-only face must be seen in the same place to be hidden
    max_gap: int = 30  # a track missing for up to this many frames and found again is covered across the gap
    keyframe_every: int = 0  # also run `keyframe_detector` on every k-th frame, its faces handed on (0 = off)
    keyframe_detector: str = "thorough"  # a slower, stronger detector (or preset) for those key frames

    def __post_init__(self) -> None:
        if self.hold_frames < 0 or self.lookback < 0 or self.max_gap < 0:
            raise ValueError("hold_frames, lookback and max_gap must be zero or more")
        if not 0.0 <= self.pad <= 1.0:
            raise ValueError(f"pad must be in [0, 1], got {self.pad}")
        if not 0.0 < self.smoothing <= 1.0:
            raise ValueError(f"smoothing must be in (0, 1], got {self.smoothing}")
        if self.detect_every < 1:
            raise ValueError(f"detect_every must be at least 1, got {self.detect_every}")
        if self.detect_every > 1 and not self.enabled:
            raise ValueError("detect_every > 1 needs tracking: frames between detections are covered by tracks")
        if not 0.0 < self.weak_ratio <= 1.0:
            raise ValueError(f"weak_ratio must be in (0, 1], got {self.weak_ratio}")
        if self.confirm_frames < 2:
            raise ValueError(f"confirm_frames must be at least 2 (one frame is a blip), got {self.confirm_frames}")
        if self.keyframe_every < 0:
            raise ValueError(f"keyframe_every must be zero (off) or more, got {self.keyframe_every}")
        if self.keyframe_every > 0 and not self.enabled:
            raise ValueError("key frames need tracking: their faces are held by the tracks between key frames")


def with_key_frame_faces(faces: list[Face], key_faces: list[Face], threshold: float) -> list[Face]:
    """A frame's faces with a key-frame detector's faces added. The key-frame detector is the stronger one, so
    each of its faces counts as a detection at `threshold` at least: a face both found keeps the frame
    detector's box (the tracks follow that detector's boxes) with the higher score, the others are added."""
    if not key_faces:
        return faces
    merged = list(faces)
    overlaps = iou_matrix(
        np.array([f.box for f in key_faces], np.float64).reshape(-1, 4),
        np.array([f.box for f in faces], np.float64).reshape(-1, 4),
    )
    for row, key_face in enumerate(key_faces):
        score = max(key_face.score, threshold)
        best = int(overlaps[row].argmax()) if len(faces) else -1
        if best >= 0 and overlaps[row, best] >= CHAIN_IOU:
            merged[best] = dataclasses.replace(merged[best], score=max(merged[best].score, score))
        else:
            merged.append(dataclasses.replace(key_face, score=score))
    return merged


@dataclass(frozen=True)
class CoveredFace:
    """A region hidden in one frame: the face, its track (-1 when untracked) and why it is covered.

    source: "detected" (at the threshold, or a weaker candidate continuing a track), "weak" (a weak-only face
    confirmed by persistence), "held" (track lost or between detections), "interpolated" (across a gap),
    "lookback" (before the track's first frame)."""

    face: Face
    track_id: int
    source: str
    detected: Face | None = None  # the detector's own face (box not grown) when source is "detected"


@dataclass
class TrackedFrame:
    """One frame after tracking: the regions to hide, and the weak candidates no track has (yet) claimed."""

    covered: list[CoveredFace]
    candidates: list[Face] = field(default_factory=list)


@dataclass
class _TrackState:
    last_face: Face
    smoothed: np.ndarray
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))


def _union(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.array([min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])])


def _grow(box: np.ndarray, pad: float, motion: np.ndarray) -> np.ndarray:
    width, height = box[2] - box[0], box[3] - box[1]
    dx = pad * width + abs(motion[0])
    dy = pad * height + abs(motion[1])
    return np.array([box[0] - dx, box[1] - dy, box[2] + dx, box[3] + dy])


def _byte_tracker(hold: int, fps: float, threshold: float, confirm_frames: int):
    from trackers import ByteTrackTracker  # imported here: ~1 s, only video needs it

    return ByteTrackTracker(
        # The tracker counts its buffer in 30 fps frames; convert so a track lives `hold` real frames.
        lost_track_buffer=max(1, math.ceil(hold * 30.0 / fps)),
        frame_rate=fps,
        track_activation_threshold=threshold,
        high_conf_det_threshold=threshold,
        minimum_consecutive_frames=confirm_frames,
        minimum_iou_threshold=0.1,
    )


def _detections(faces: list[Face]):
    import supervision as sv

    return sv.Detections(
        xyxy=np.array([f.box for f in faces], np.float32).reshape(-1, 4),
        confidence=np.array([f.score for f in faces], np.float32),
        data={"index": np.arange(len(faces))},
    )


class FaceTracker:
    """Turns each frame's candidates into the regions to hide in that frame.

    threshold: the detector's threshold: candidates at it are faces; below it (down to weak_ratio x it) they
    are weak evidence."""

    def __init__(self, options: TrackingOptions, fps: float, threshold: float = 0.5) -> None:
        self.options = options
        self.fps = fps if fps and math.isfinite(fps) and fps > 0 else 30.0
        self.threshold = threshold
        self._states: dict[int, _TrackState] = {}
        self._untracked: list[tuple[Face, int]] = []  # (padded face, frames it is still held)
        self._tracker = self._weak_tracker = None
        if options.enabled:
            # A face found on a detection (or key) frame is held at least until the next one.
            self._hold = max(options.hold_frames, options.detect_every, options.keyframe_every)
            # Tracks live through gaps of max_gap frames (for interpolation), covered online for `hold` of them.
            self._tracker = _byte_tracker(max(self._hold, options.max_gap), self.fps, threshold, 1)
            if options.weak_ratio < 1.0:
                # Weak candidates persist for a track id only when seen confirm_frames times in a row.
                self._weak_tracker = _byte_tracker(1, self.fps, 0.0, options.confirm_frames)

    @property
    def weak_floor(self) -> float:
        """The lowest score that counts as evidence."""
        return self.threshold * self.options.weak_ratio if self.options.enabled else self.threshold

    def update(self, faces: list[Face] | None) -> TrackedFrame:
        """Regions to hide in this frame. `faces` (at or above `weak_floor`) is None on frames the detector
        skipped (detect_every)."""
        faces = [f for f in faces or [] if f.score >= self.weak_floor]
        if self._tracker is None:
            return TrackedFrame([CoveredFace(face, -1, "detected", face) for face in faces])
        result = self._tracker.update(_detections(faces))
        covered: list[CoveredFace] = []
        weak: list[Face] = []
        seen: set[int] = set()
        track_ids = result.tracker_id if result.tracker_id is not None else []
        for index, track_id in zip(result.data.get("index", []), track_ids, strict=True):
            face = faces[int(index)]
            track_id = int(track_id)
            box = np.asarray(face.box, np.float64)
            if track_id < 0:
                if face.score >= self.threshold:
                    padded = _grow(box, self.options.pad, np.zeros(2))
                    covered.append(CoveredFace(face.with_box(padded), -1, "detected", face))
                else:
                    weak.append(face)
                continue
            seen.add(track_id)
            state = self._states.get(track_id)
            if state is None:
                state = self._states[track_id] = _TrackState(last_face=face, smoothed=box)
            else:
                last = np.asarray(state.last_face.box, np.float64)
                state.velocity = (box[:2] + box[2:]) / 2 - (last[:2] + last[2:]) / 2
                alpha = self.options.smoothing
                state.smoothed = alpha * box + (1 - alpha) * state.smoothed
                state.last_face = face
            cover = _grow(_union(box, state.smoothed), self.options.pad, state.velocity)
            covered.append(CoveredFace(face.with_box(cover), track_id, "detected", face))
        covered.extend(self._held(seen))
        live = {int(t.tracker_id) for t in self._tracker.tracks}
        self._states = {k: v for k, v in self._states.items() if k in live}
        confirmed, candidates = self._weak_evidence(weak)
        covered.extend(confirmed)
        return TrackedFrame(covered + self._hold_untracked(covered), candidates)

    def _held(self, seen: set[int]) -> list[CoveredFace]:
        """Tracks the detector lost (or skipped): their predicted box while they are held."""
        held = []
        for tracklet in self._tracker.tracks:
            track_id = int(tracklet.tracker_id)
            if track_id < 0 or track_id in seen or track_id not in self._states:
                continue
            if not 0 < tracklet.time_since_update <= self._hold:
                continue
            state = self._states[track_id]
            predicted = np.asarray(tracklet.get_state_bbox(), np.float64)
            if not np.all(np.isfinite(predicted)) or predicted[2] <= predicted[0] or predicted[3] <= predicted[1]:
                predicted = np.asarray(state.last_face.box, np.float64)
            cover = _grow(_union(predicted, state.smoothed), self.options.pad, state.velocity)
            held.append(CoveredFace(state.last_face.moved_to(cover), track_id, "held"))
        return held

    def _weak_evidence(self, weak: list[Face]) -> tuple[list[CoveredFace], list[Face]]:
        """(weak faces confirmed by persistence, the unconfirmed candidates)."""
        if self._weak_tracker is None:
            return [], weak
        result = self._weak_tracker.update(_detections(weak))
        confirmed, candidates = [], []
        track_ids = result.tracker_id if result.tracker_id is not None else []
        for index, track_id in zip(result.data.get("index", []), track_ids, strict=True):
            face = weak[int(index)]
            if track_id < 0:
                candidates.append(face)
            else:
                padded = _grow(np.asarray(face.box, np.float64), self.options.pad, np.zeros(2))
                confirmed.append(CoveredFace(face.with_box(padded), WEAK_TRACK_IDS + int(track_id), "weak", face))
        return confirmed, candidates

    def _hold_untracked(self, covered: list[CoveredFace]) -> list[CoveredFace]:
        """Hold detections ByteTrack has not given an id: without this a face seen once, or first seen just
        before skipped frames, would not be held."""
        current = np.array([c.face.box for c in covered], np.float64).reshape(-1, 4)
        held, kept = [], []
        for face, frames_left in self._untracked:
            overlap = iou_matrix(np.asarray([face.box]), current) if len(current) else np.zeros((1, 0))
            if frames_left > 0 and not (overlap > 0.3).any():
                held.append(CoveredFace(face, -1, "held"))
                kept.append((face, frames_left - 1))
        self._untracked = kept + [(c.face, self._hold) for c in covered if c.track_id < 0 and c.source == "detected"]
        return held


def complete_plan(plan: list[TrackedFrame], options: TrackingOptions, size: tuple[int, int]) -> list[list[CoveredFace]]:
    """Every frame's regions once the whole clip is known: gaps interpolated, tracks carried back.

    size: (width, height) of the frames; back-filled boxes stop where they would leave the picture."""
    covered = [list(frame.covered) for frame in plan]
    if not options.enabled:
        return covered
    tracks: dict[int, dict[int, CoveredFace]] = {}
    for index, regions in enumerate(covered):
        for region in regions:
            if region.track_id >= 0:
                tracks.setdefault(region.track_id, {}).setdefault(index, region)
    for track_id, frames in tracks.items():
        indices = sorted(frames)
        for before, after in itertools.pairwise(indices):
            if 1 < after - before <= options.max_gap + 1:
                _interpolate(covered, frames[before], frames[after], before, after, track_id)
        if options.lookback:
            _carry_back(covered, plan, frames, indices, options, size, track_id)
    return covered


def _interpolate(covered, first: CoveredFace, last: CoveredFace, start: int, end: int, track_id: int) -> None:
    a, b = np.asarray(first.face.box, np.float64), np.asarray(last.face.box, np.float64)
    for index in range(start + 1, end):
        share = (index - start) / (end - start)
        box = (1 - share) * a + share * b
        covered[index].append(CoveredFace(first.face.moved_to(box), track_id, "interpolated"))


def _carry_back(covered, plan, frames, indices, options: TrackingOptions, size, track_id: int) -> None:
    """Cover the track in the `lookback` frames before its first: along the weak candidates overlapping it,
    frame by frame backwards; where there is none, moved back by its starting motion and grown by it."""
    first = frames[indices[0]]
    box = np.asarray((first.detected or first.face).box, np.float64)
    motion = np.zeros(2)
    if len(indices) > 1:
        later = np.asarray((frames[indices[1]].detected or frames[indices[1]].face).box, np.float64)
        motion = ((later[:2] + later[2:]) - (box[:2] + box[2:])) / 2 / (indices[1] - indices[0])
    width, height = size
    for step in range(1, options.lookback + 1):
        index = indices[0] - step
        if index < 0:
            return
        # Weak candidates there, and detections ByteTrack had not given an id yet (a track's first frame).
        candidates = plan[index].candidates + [
            r.detected for r in plan[index].covered if r.track_id < 0 and r.detected is not None
        ]
        overlaps = iou_matrix(box[None], np.array([c.box for c in candidates], np.float64))[0] if candidates else []
        if len(overlaps) and overlaps.max() >= CHAIN_IOU:
            box = np.asarray(candidates[int(np.argmax(overlaps))].box, np.float64)
            grow = np.zeros(2)
        else:
            box = box - np.tile(motion, 2)
            grow = motion * step
        if box[2] <= 0 or box[3] <= 0 or box[0] >= width or box[1] >= height:
            return  # the face had not come into view yet
        cover = _grow(box, options.pad, grow)
        covered[index].append(CoveredFace(first.face.moved_to(cover), track_id, "lookback"))
