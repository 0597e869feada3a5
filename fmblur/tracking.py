"""Temporal consistency for video: no face leaks between frames.

Every detection at the detector's threshold is always hidden; tracking only ever adds cover. ByteTrack
(Roboflow's `trackers` package) links detections across frames:
- its second association stage lets candidates below the threshold (down to `weak_ratio` x the threshold)
  continue a face's track, so a face that fades is still followed;
- a face that is only ever seen weakly is hidden once its weak candidates persist in the same place for
  `confirm_frames` frames in a row (a second ByteTrack over the weak candidates, which gives a track an id only
  then); a one-frame blip is not hidden. A key-frame detector's weak candidates join them (`fmblur.video` runs
  it again around them on the next frames, so that they can be confirmed);
- a track the detector loses is still covered for `hold_frames` frames, at its Kalman-predicted position;
- boxes of tracked faces are padded, and grown by the track's last motion so fast movement stays covered;
- boxes are smoothed (moving average) but never shrunk below the detection itself.

Video is known whole before it is written (`fmblur.video` reads it twice), so `complete_plan` then works
offline over every frame's regions: a track's gaps of up to `max_gap` frames are interpolated along the
camera's motion (a link across a gap to a detection the face's box could not have reached splits the track
there: ByteTrack's prediction of a lost face ignores the camera and can drift onto another), and each track
is carried back up to `lookback` frames before its first frame and on up to `lookahead` frames after its last
detection, along the camera's measured motion (`camera_motion`: pan, zoom, cuts) and the face's own, snapping
to weak candidates on the way, so a face is hidden from the frame it came into view to the frame it left,
even where the detector found it in only part of them. A face detected in a single frame (no track id) is
carried the same way. A cut ends a carry.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass, field

import numpy as np

from fmblur.camera_motion import STILL, FrameMotion, moved_back, moved_on
from fmblur.face import Face
from fmblur.geometry import iou_matrix

# Weak-evidence tracks get ids from here on, apart from the ids of tracks of detections at the threshold.
WEAK_TRACK_IDS = 1_000_000
# A candidate continues a track backwards (or a weak track) when their boxes overlap this much.
CHAIN_IOU = 0.3
# Carrying a face beyond its track: its own motion is measured over this many frames at that end, counts only
# when it moved more than this share of its size there (less is the jitter of detected boxes), and the box
# grows by the distance it may have strayed, up to this share of its size on each side.
OWN_MOTION_SPAN = 10
OWN_MOTION_JITTER = 0.15
MAX_DRIFT = 0.5
CARRIED_SOURCES = ("lookback", "carried")  # regions of a track beyond its detections
SEEN_SOURCES = ("detected", "weak")  # regions where the detector saw the face (the others are inferred)
REPEAT_IOU = 0.9  # a carried region overlapping another region of its frame this much repeats it
REPEATABLE_SOURCES = (*CARRIED_SOURCES, "interpolated")  # regions left out where they repeat another
# A carry ends where its box meets another track's detection this much: that track holds the face from there
# (and carries it on from its own ends), so carrying both would hide the face twice and drift off it.
HANDOVER_IOU = 0.5


@dataclass(frozen=True)
class TrackingOptions:
    """Knobs of temporal consistency; the defaults suit 10-60 fps footage. Everything but `enabled` needs
    `enabled` (detections linked into tracks)."""

    enabled: bool = True
    hold_frames: int = 10  # frames a lost track stays covered at its predicted position
    pad: float = 0.1  # tracked boxes grow by this share of their size on every side
    smoothing: float = 0.6  # weight of the newest box in the moving average (1 = no smoothing)
    # Frames before a track's first frame / after its last detection in which it is also covered, carried
    # along the camera's motion (0 = off). Long (6 s at 25 fps): a face is hidden from the frame it came into
    # view, however long the detector took to find it; cuts and the picture's edges end a carry sooner.
    lookback: int = 150
    lookahead: int = 150
    detect_every: int = 1  # run the detector on every k-th frame only, tracking in between (1 = every frame)
    # Frames the frame detector takes in one run (0 = DETECT_BATCH_ON_GPU where it runs on CUDA, else 1: on the
    # CPU a batch of 8 720p frames cost more per frame than one at a time).
    detect_batch: int = 0
    # Threads running the detectors ahead of the tracker, each on its own frames (0 = DETECTION_THREADS where
    # the detectors can share the cores, else 1).
    detect_threads: int = 0
    weak_ratio: float = 0.5  # candidates scoring this share of the detector's threshold are weak evidence (1 = off)
    confirm_frames: int = 3  # frames in a row a weak-only face must be seen in the same place to be hidden
    max_gap: int = 30  # a track missing for up to this many frames and found again is covered across the gap
    keyframe_every: int = 0  # also run `keyframe_detector` on every k-th frame, its faces handed on (0 = off)
    keyframe_detector: str = "thorough"  # a slower, stronger detector (or preset) for those key frames

    def __post_init__(self) -> None:
        if min(self.hold_frames, self.lookback, self.lookahead, self.max_gap) < 0:
            raise ValueError("hold_frames, lookback, lookahead and max_gap must be zero or more")
        if not 0.0 <= self.pad <= 1.0:
            raise ValueError(f"pad must be in [0, 1], got {self.pad}")
        if not 0.0 < self.smoothing <= 1.0:
            raise ValueError(f"smoothing must be in (0, 1], got {self.smoothing}")
        if self.detect_batch < 0:
            raise ValueError(f"detect_batch must be zero (automatic) or more, got {self.detect_batch}")
        if self.detect_threads < 0:
            raise ValueError(f"detect_threads must be zero (automatic) or more, got {self.detect_threads}")
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


def with_key_frame_faces(
    faces: list[Face], key_faces: list[Face], threshold: float, key_threshold: float = 0.0
) -> list[Face]:
    """A frame's faces with a key-frame detector's faces added. The key-frame detector is the stronger one, so
    each of its faces at `key_threshold` counts as a detection at `threshold` at least: a face both found keeps
    the frame detector's box (the tracks follow that detector's boxes) with the higher score, the others are
    added. Its faces below `key_threshold` (weak evidence) count as weak evidence of the frame detector: their
    score is scaled by threshold / key_threshold, so they land where the frame detector's weak candidates are."""
    if not key_faces:
        return faces
    merged = list(faces)
    overlaps = iou_matrix(
        np.array([f.box for f in key_faces], np.float64).reshape(-1, 4),
        np.array([f.box for f in faces], np.float64).reshape(-1, 4),
    )
    for row, key_face in enumerate(key_faces):
        if key_face.score >= key_threshold:
            score = max(key_face.score, threshold)
        else:
            score = key_face.score * threshold / key_threshold
        best = int(overlaps[row].argmax()) if len(faces) else -1
        if best >= 0 and overlaps[row, best] >= CHAIN_IOU:
            merged[best] = dataclasses.replace(merged[best], score=max(merged[best].score, score))
        else:
            merged.append(dataclasses.replace(key_face, score=score))
    return merged


def unexplained(candidates: list[Face], boxes: list[np.ndarray] | np.ndarray) -> list[Face]:
    """The candidates that overlap none of `boxes` (CHAIN_IOU): places no face known there accounts for."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    if not candidates or not len(boxes):
        return list(candidates)
    overlaps = iou_matrix(np.array([c.box for c in candidates], np.float64), boxes)
    return [c for c, row in zip(candidates, overlaps, strict=True) if row.max() < CHAIN_IOU]


@dataclass(frozen=True)
class CoveredFace:
    """A region hidden in one frame: the face, its track (-1 when untracked) and why it is covered.

    source: "detected" (at the threshold, or a weaker candidate continuing a track), "weak" (a weak-only face
    confirmed by persistence), "held" (track lost or between detections), "interpolated" (across a gap),
    "lookback" (before the track's first frame), "carried" (after the track's last detection, beyond `held`)."""

    face: Face
    track_id: int
    source: str
    detected: Face | None = None  # the detector's own face (box not grown) when source is "detected"


@dataclass
class TrackedFrame:
    """One frame after tracking: the regions to hide, and the weak candidates no track has (yet) claimed."""

    covered: list[CoveredFace]
    candidates: list[Face] = field(default_factory=list)
    motion: FrameMotion = STILL  # how the picture moved since the previous frame (`camera_motion`)


@dataclass
class _TrackState:
    last_face: Face
    smoothed: np.ndarray
    last_frame: int = 0  # the frame of last_face
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))  # pixels per frame


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
        self._frame = -1  # the index of the frame of the last update
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
        self._frame += 1
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
                state = self._states[track_id] = _TrackState(last_face=face, smoothed=box, last_frame=self._frame)
            else:
                last = np.asarray(state.last_face.box, np.float64)
                # Per frame: a track found again after a gap moved over all of it (taken as one frame's motion,
                # a face found 20 frames on grew its box by 20 frames of motion on every side).
                elapsed = max(1, self._frame - state.last_frame)
                state.velocity = ((box[:2] + box[2:]) / 2 - (last[:2] + last[2:]) / 2) / elapsed
                state.last_frame = self._frame
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
    boxes = _FrameBoxes.of(plan)
    for track_id, whole in tracks.items():
        for frames in _segments(plan, whole):
            # Between detections: the frames held online in a gap are ByteTrack's guess, made without the
            # camera's motion, so the gap is interpolated along it as well.
            seen = [i for i in sorted(frames) if frames[i].source in SEEN_SOURCES]
            for before, after in itertools.pairwise(seen):
                if 1 < after - before <= options.max_gap + 1:
                    _interpolate(covered, plan, frames[before], frames[after], before, after, track_id)
            for step in (-1, 1):
                _carry(covered, plan, boxes, frames, seen, options, size, track_id, step)
    for index, regions in enumerate(plan):
        for region in regions.covered:
            if region.track_id < 0 and region.source == "detected" and _unlinked(plan, boxes, index, region):
                # A face detected in one frame only (ByteTrack gives a track its id from its second frame):
                # carried both ways like a track, or it would be hidden only from that frame for `hold_frames`.
                for step in (-1, 1):
                    _carry(covered, plan, boxes, {index: region}, [index], options, size, -1, step)
    return [_without_repeats(regions) for regions in covered]


def _unlinked(plan: list[TrackedFrame], boxes: _FrameBoxes, index: int, region: CoveredFace) -> bool:
    """Whether a detection without a track id is no track's first or last frame: a track detects the face in
    neither neighbouring frame (where one does, that track's own carry covers it on from there)."""
    box = np.asarray(region.detected.box, np.float64)
    for neighbour, later in ((index - 1, index), (index + 1, index + 1)):
        if not 0 <= neighbour < len(plan):
            continue
        motion = plan[later].motion
        there = moved_back(box, motion) if neighbour < index else moved_on(box, motion)
        if _held_by_another(there, boxes.tracked[neighbour]):
            return False
    return True


def _without_repeats(regions: list[CoveredFace]) -> list[CoveredFace]:
    """Carried and interpolated regions that repeat another region of the frame (carried tracks that met the
    same weak candidate, a track carried onto its own later re-detection, a gap interpolated where the track was
    held) are left out: they hide nothing more and each costs a blur."""
    carried = [r for r in regions if r.source in REPEATABLE_SOURCES]
    if not carried:
        return regions
    kept = [r for r in regions if r.source not in REPEATABLE_SOURCES]
    for region in sorted(carried, key=lambda r: -r.face.width * r.face.height):
        boxes = np.array([k.face.box for k in kept], np.float64).reshape(-1, 4)
        if not len(boxes) or iou_matrix(np.asarray(region.face.box, np.float64)[None], boxes).max() < REPEAT_IOU:
            kept.append(region)
    return kept


def _segments(plan: list[TrackedFrame], frames: dict[int, CoveredFace]) -> list[dict[int, CoveredFace]]:
    """A track's frames, split where ByteTrack linked it across a gap to a detection that is not where its
    last one went: the face's box carried on along the camera's motion (with and without the face's own) meets
    the detection after the gap less than CHAIN_IOU. ByteTrack predicts a lost face without the camera's
    motion, so a held track drifts and can take up another face or a false positive; interpolating towards it
    would leave the face, and the track's own carries would start from the wrong place. Each part is
    interpolated and carried on its own; frames held between the two parts belong to neither."""
    detected = [i for i in sorted(frames) if frames[i].source in SEEN_SOURCES]
    broken = [
        (before, after)
        for before, after in itertools.pairwise(detected)
        if after - before > 1 and not _went_there(plan, frames, detected, before, after)
    ]
    if not broken:
        return [frames]
    # A part runs from the detection after a broken link (the first, from the clip's start) to the detection
    # before the next one (the last, to the clip's end).
    lows = [0, *(after for _, after in broken)]
    highs = [*(before for before, _ in broken), len(plan)]
    return [{i: r for i, r in frames.items() if low <= i <= high} for low, high in zip(lows, highs, strict=True)]


def _went_there(
    plan: list[TrackedFrame], frames: dict[int, CoveredFace], detected: list[int], before: int, after: int
) -> bool:
    """Whether the detection in frame `after` is where the track's detection in frame `before` went: its box
    moved along the camera's motion over the gap, with or without the face's own motion at that end, overlaps
    the detection at least CHAIN_IOU."""
    box = np.asarray(frames[before].detected.box, np.float64)
    camera_only = box
    for index in range(before + 1, after + 1):
        camera_only = moved_on(camera_only, plan[index].motion)
    own = _motion_at_end(plan, frames, detected, before, 1)
    with_own = camera_only + np.tile(own, 2) * (after - before)
    there = np.asarray(frames[after].detected.box, np.float64)
    return bool(iou_matrix(np.array([camera_only, with_own]), there[None]).max() >= CHAIN_IOU)


def _interpolate(
    covered, plan: list[TrackedFrame], first: CoveredFace, last: CoveredFace, start: int, end: int, track_id: int
) -> None:
    """Cover a track's gap: the box before the gap carried on along the camera's motion and the box after it
    carried back, blended by how far into the gap a frame is (with a shaking camera a straight line between
    the two misses a small face by the shake)."""
    forward = [np.asarray(first.face.box, np.float64)]
    for index in range(start + 1, end):
        forward.append(moved_on(forward[-1], plan[index].motion))
    backward = [np.asarray(last.face.box, np.float64)]
    for index in range(end, start + 1, -1):  # frame `index`'s motion links it to the frame before
        backward.append(moved_back(backward[-1], plan[index].motion))
    backward.reverse()  # backward[k] is the box in frame start + 1 + k, forward[k] in frame start + k
    for index in range(start + 1, end):
        share = (index - start) / (end - start)
        box = (1 - share) * forward[index - start] + share * backward[index - start - 1]
        covered[index].append(CoveredFace(first.face.moved_to(box), track_id, "interpolated"))


def _own_motion(plan: list[TrackedFrame], frames: dict[int, CoveredFace], start: int, end: int) -> np.ndarray:
    """The face's own motion per frame between two of its frames (x, y): how its box's centre moved from
    `start` to `end`, less what the camera's motion accounts for; none when that is within the jitter of
    detected boxes (people who stand still in a moving picture)."""
    first, second = (np.asarray((frames[i].detected or frames[i].face).box, np.float64) for i in (start, end))
    predicted = first
    for index in range(start + 1, end + 1):
        predicted = moved_on(predicted, plan[index].motion)
    moved = ((second[:2] + second[2:]) - (predicted[:2] + predicted[2:])) / 2
    size = second[2:] - second[:2]
    if end == start or np.all(np.abs(moved) < OWN_MOTION_JITTER * size):
        return np.zeros(2)
    return moved / (end - start)


@dataclass
class _FrameBoxes:
    """Per frame of a plan, the boxes a carry looks at in every step, as arrays made once: `tracked`, the
    detector's boxes of tracks' detections (a carry ends on one, `_held_by_another`); `snap`, those of weak
    candidates and of detections ByteTrack had not given an id (a track's first frame), which a carry moves onto."""

    tracked: list[np.ndarray]
    snap: list[np.ndarray]

    @classmethod
    def of(cls, plan: list[TrackedFrame]) -> _FrameBoxes:
        def array(faces: list[Face]) -> np.ndarray:
            return np.array([f.box for f in faces], np.float64).reshape(-1, 4)

        return cls(
            [array([r.detected for r in f.covered if r.track_id >= 0 and r.detected is not None]) for f in plan],
            [
                array(f.candidates + [r.detected for r in f.covered if r.track_id < 0 and r.detected is not None])
                for f in plan
            ],
        )


def _motion_at_end(
    plan: list[TrackedFrame], frames: dict[int, CoveredFace], seen: list[int], end: int, step: int
) -> np.ndarray:
    """The face's own motion per frame at one end of its detections (`end`: the first of `seen` for step -1, a
    later one for step 1), measured from the frames of `seen` up to OWN_MOTION_SPAN away on that side: two
    neighbouring boxes differ by jitter."""
    if step < 0:
        return _own_motion(plan, frames, end, max(i for i in seen if end <= i <= end + OWN_MOTION_SPAN))
    return _own_motion(plan, frames, min(i for i in seen if end - OWN_MOTION_SPAN <= i <= end), end)


def _held_by_another(box: np.ndarray, tracked: np.ndarray) -> bool:
    """Whether a track's detection in this frame (its detector's own box, from `_FrameBoxes.tracked`) is the
    face being carried. A carry only visits frames beyond its own part's detections, so a detection of the same
    track id there belongs to another part of it (`_segments`) and takes the face over just as another track's
    would."""
    return len(tracked) > 0 and iou_matrix(box[None], tracked).max() >= HANDOVER_IOU


def _carry(covered, plan, boxes: _FrameBoxes, frames, seen, options: TrackingOptions, size, track_id: int, step: int):
    """Cover the track in up to `lookback` frames before its first (step -1) or `lookahead` frames after its last
    (step 1), never across a cut: frame by frame, moved by the camera's motion and the face's own motion at that
    end of the track, then onto a weak candidate there when one overlaps it. A box that rests on extrapolation
    alone grows by the face's own motion; frames where it is out of the picture get nothing (with a moving camera
    a face that left the picture can come back into it). The carry ends where another track has detected the
    face (HANDOVER_IOU). `seen`: the track's frames where the detector saw it (SEEN_SOURCES), in order; the carry
    starts from their ends, since held boxes after a track's last detection are predictions."""
    if not seen:
        return
    end = seen[0] if step < 0 else seen[-1]
    box = np.asarray((frames[end].detected or frames[end].face).box, np.float64)
    own = _motion_at_end(plan, frames, seen, end, step)
    limit = MAX_DRIFT * (box[2:] - box[:2])
    drift = np.zeros(2)
    width, height = size
    index = end
    for _ in range(options.lookback if step < 0 else options.lookahead):
        later = index if step < 0 else index + 1  # the frame whose motion links this step's two frames
        if index + step < 0 or index + step >= len(plan) or plan[later].motion.cut:
            return  # the clip's ends, or a cut: the face's shot ends there
        index += step
        moved = moved_back(box, plan[later].motion) if step < 0 else moved_on(box, plan[later].motion)
        box = moved + step * np.tile(own, 2)
        if _held_by_another(box, boxes.tracked[index]):
            return
        snap = boxes.snap[index]
        overlaps = iou_matrix(box[None], snap)[0] if len(snap) else []
        if len(overlaps) and overlaps.max() >= CHAIN_IOU:
            box = snap[int(np.argmax(overlaps))].copy()
            drift = np.zeros(2)
        else:
            drift = np.minimum(drift + np.abs(own), limit)
        if box[2] <= 0 or box[3] <= 0 or box[0] >= width or box[1] >= height:
            continue  # out of the picture here
        cover = _grow(box, options.pad, drift)
        covered[index].append(
            CoveredFace(frames[end].face.moved_to(cover), track_id, "lookback" if step < 0 else "carried")
        )
