"""Temporal consistency for video: no face leaks between frames.

Every detection is always hidden; tracking only ever adds cover. ByteTrack (Roboflow's `trackers` package)
links detections across frames. On top of it:
- a track the detector loses is still covered for `hold_frames` frames, at its Kalman-predicted position;
- boxes of tracked faces are padded, and grown by the track's last motion so fast movement stays covered;
- boxes are smoothed (moving average) but never shrunk below the detection itself;
- a look-back buffer delays output by `lookback` frames, so a face is also covered in the frames just
  before the one where it was first detected.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from fmblur.face import Face
from fmblur.geometry import iou_matrix


@dataclass(frozen=True)
class TrackingOptions:
    """Knobs of temporal consistency; the defaults suit 10-60 fps footage.

    enabled: link detections into tracks (hold, smoothing, motion padding, look-back need it).
    hold_frames: frames a lost track stays covered at its predicted position.
    pad: tracked boxes grow by this share of their size on every side.
    smoothing: weight of the newest box in the moving average (1 = no smoothing).
    lookback: frames buffered so a new track is also covered before its first detection (0 = off).
    detect_every: run the detector on every k-th frame only, tracking in between (1 = every frame).
    """

    enabled: bool = True
    hold_frames: int = 10
    pad: float = 0.1
    smoothing: float = 0.6
    lookback: int = 5
    detect_every: int = 1

    def __post_init__(self) -> None:
        if self.hold_frames < 0 or self.lookback < 0:
            raise ValueError("hold_frames and lookback must be zero or more")
        if not 0.0 <= self.pad <= 1.0:
            raise ValueError(f"pad must be in [0, 1], got {self.pad}")
        if not 0.0 < self.smoothing <= 1.0:
            raise ValueError(f"smoothing must be in (0, 1], got {self.smoothing}")
        if self.detect_every < 1:
            raise ValueError(f"detect_every must be at least 1, got {self.detect_every}")
        if self.detect_every > 1 and not self.enabled:
            raise ValueError("detect_every > 1 needs tracking: frames between detections are covered by tracks")


@dataclass(frozen=True)
class CoveredFace:
    """A region hidden in one frame: the face, its track (-1 when untracked) and why it is covered."""

    face: Face
    track_id: int
    source: str  # "detected", "held" (track lost or between detections) or "lookback"
    detected: Face | None = None  # the detector's own face (box not grown) when source is "detected"


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


def _with_box(face: Face, box: np.ndarray) -> Face:
    """`face` with a grown box; the detected landmarks stay where they were seen."""
    return Face(box=tuple(float(v) for v in box), score=face.score, landmarks=face.landmarks)  # type: ignore[arg-type]


def _moved_face(face: Face, box: np.ndarray) -> Face:
    """`face` moved to `box`: landmarks follow the box centre, so feature blur still has points."""
    old = np.asarray(face.box)
    shift = (box[:2] + box[2:]) / 2 - (old[:2] + old[2:]) / 2
    landmarks = None
    if face.landmarks is not None:
        landmarks = {k: (x + float(shift[0]), y + float(shift[1])) for k, (x, y) in face.landmarks.items()}
    return Face(box=tuple(float(v) for v in box), score=face.score, landmarks=landmarks)  # type: ignore[arg-type]


class FaceTracker:
    """Turns each frame's detections into the regions to hide in that frame."""

    def __init__(self, options: TrackingOptions, fps: float) -> None:
        self.options = options
        self.fps = fps if fps and math.isfinite(fps) and fps > 0 else 30.0
        self._states: dict[int, _TrackState] = {}
        self._untracked: list[tuple[Face, int]] = []  # (padded face, frames it is still held)
        self._tracker = None
        if options.enabled:
            from trackers import ByteTrackTracker  # imported here: ~1 s, only video needs it

            hold = max(options.hold_frames, options.detect_every)
            self._hold = hold
            self._tracker = ByteTrackTracker(
                # The tracker counts its buffer in 30 fps frames; convert so a track lives `hold` real frames.
                lost_track_buffer=max(1, math.ceil(hold * 30.0 / self.fps)),
                frame_rate=self.fps,
                # Detections are already filtered by the detector's threshold: every one may start a track.
                track_activation_threshold=0.0,
                high_conf_det_threshold=0.0,
                minimum_consecutive_frames=1,
                minimum_iou_threshold=0.1,
            )

    def update(self, faces: list[Face] | None) -> list[CoveredFace]:
        """Regions to hide in this frame. `faces` is None on frames the detector skipped (detect_every)."""
        if self._tracker is None:
            return [CoveredFace(face, -1, "detected", face) for face in faces or []]
        import supervision as sv

        detections = faces or []
        boxes = np.array([f.box for f in detections], np.float32).reshape(-1, 4)
        result = self._tracker.update(
            sv.Detections(
                xyxy=boxes,
                confidence=np.array([f.score for f in detections], np.float32),
                data={"index": np.arange(len(detections))},
            )
        )
        covered: list[CoveredFace] = []
        seen: set[int] = set()
        track_ids = result.tracker_id if result.tracker_id is not None else []
        for index, track_id in zip(result.data.get("index", []), track_ids, strict=False):
            face = detections[int(index)]
            track_id = int(track_id)
            box = np.asarray(face.box, np.float64)
            if track_id < 0:
                padded = _grow(box, self.options.pad, np.zeros(2))
                covered.append(CoveredFace(_with_box(face, padded), -1, "detected", face))
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
            covered.append(CoveredFace(_with_box(face, cover), track_id, "detected", face))
        # Tracks the detector lost (or skipped): cover their predicted box while they are held.
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
            covered.append(CoveredFace(_moved_face(state.last_face, cover), track_id, "held"))
        live = {int(t.tracker_id) for t in self._tracker.tracks}
        self._states = {k: v for k, v in self._states.items() if k in live}
        return covered + self._hold_untracked(covered)

    def _hold_untracked(self, covered: list[CoveredFace]) -> list[CoveredFace]:
        """Hold detections ByteTrack has not (yet) given an id: it confirms a new track only on its second
        match, so without this a face seen once, or first seen just before skipped frames, would not be held."""
        current = np.array([c.face.box for c in covered], np.float64).reshape(-1, 4)
        held, kept = [], []
        for face, frames_left in self._untracked:
            overlap = iou_matrix(np.asarray([face.box]), current) if len(current) else np.zeros((1, 0))
            if frames_left > 0 and not (overlap > 0.3).any():
                held.append(CoveredFace(face, -1, "held"))
                kept.append((face, frames_left - 1))
        self._untracked = kept + [(c.face, self._hold) for c in covered if c.track_id < 0 and c.source == "detected"]
        return held


@dataclass
class PendingFrame:
    index: int
    payload: object  # whatever the caller needs to write the frame later (image, timestamps)
    covered: list[CoveredFace]


class LookbackBuffer:
    """Holds the last `size` frames so a track that starts now is also hidden in them."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._frames: deque[PendingFrame] = deque()
        self._known_tracks: set[int] = set()

    def push(self, frame: PendingFrame) -> Iterator[PendingFrame]:
        """Add a frame; yields the frames that are now final (oldest first)."""
        for item in frame.covered:
            if item.track_id >= 0 and item.track_id not in self._known_tracks:
                self._known_tracks.add(item.track_id)
                for earlier in self._frames:
                    earlier.covered.append(CoveredFace(item.face, item.track_id, "lookback"))
        self._frames.append(frame)
        while len(self._frames) > self.size:
            yield self._frames.popleft()

    def flush(self) -> Iterator[PendingFrame]:
        while self._frames:
            yield self._frames.popleft()
