"""Anonymise a video: find faces in every frame, link them over time, then hide them and encode.

The clip is read twice (`video_io` decodes, encodes and copies audio): the first reading finds faces with the
pipeline's first stage and tracks them (`tracking.FaceTracker`); between the readings the whole clip's regions
are completed offline (`tracking.complete_plan`: gaps, faces carried back to the frame they came into view) and
an identity selection decides each track from its best frames; the second reading hides every frame's regions
with the pipeline's second stage (privacy meter included) and writes an H.264 MP4 with the input's audio and
timestamps. Memory stays flat: between the readings only boxes are kept, never frames.
Privacy fails closed: a frame that cannot be decoded or processed stops the run, and the output (written to a
temporary file and renamed at the end) never appears; an error or Ctrl-C leaves nothing behind.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import av
import cv2
import numpy as np

from fmblur.atomic import atomic_target
from fmblur.camera_motion import CameraMotion
from fmblur.detectors import Detector, create_detector
from fmblur.face import Face
from fmblur.identity.privacy import PrivacyReport
from fmblur.identity.tracks import TrackIdentities, link_untracked
from fmblur.obfuscate import region_box
from fmblur.pipeline import Anonymizer, StageTimer
from fmblur.tracking import (
    CARRIED_SOURCES,
    CoveredFace,
    FaceTracker,
    TrackedFrame,
    TrackingOptions,
    complete_plan,
    unexplained,
    with_key_frame_faces,
)
from fmblur.video_io import (
    VIDEO_SUFFIXES,
    DecodedFrame,
    Mp4Writer,
    Prefetched,
    ProgressCallback,
    TrackLog,
    VideoReadError,
    VideoSource,
    open_source,
    video_duration,
)

__all__ = ["VIDEO_SUFFIXES", "VideoReadError", "VideoReport", "anonymize_video", "video_duration"]

# Regions covered for these reasons rest on tracking, not on a detection in that frame: the review list.
INFERRED_SOURCES = ("weak", "held", "interpolated", "lookback", "carried")


@dataclass
class VideoReport:
    """What a run did: counts, rates and where the results are."""

    output: Path
    frames: int
    input_fps: float
    duration_s: float
    faces_hidden: int
    audio: str  # "copied", "re-encoded" or "none"
    seconds: float
    timings_ms: dict[str, float] = field(default_factory=dict)
    tracks_file: Path | None = None
    kept_tracks: list[int] = field(default_factory=list)  # tracks an identity selection left visible
    # Per track: the frames where it was covered without a detection there (`INFERRED_SOURCES`).
    review: list[dict] = field(default_factory=list)
    privacy: PrivacyReport | None = None  # over the frames measured (one a second), with a privacy meter

    @property
    def processing_fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("inf")


def _frames_in_range(reader: VideoSource, start: float | None, end: float | None) -> int | None:
    total = reader.frame_count
    if total is not None and (start or end):
        last = min(total / reader.fps, end) if end is not None else total / reader.fps
        total = max(0, math.ceil((last - (start or 0)) * reader.fps))
    return total


def _video_frames(items: Iterator[DecodedFrame | av.Packet]) -> Iterator[DecodedFrame]:
    return (item for item in items if not isinstance(item, av.Packet))


def find_and_track(
    frames: Iterator[DecodedFrame],
    anonymizer: Anonymizer,
    tracking: TrackingOptions,
    fps: float,
    timings: StageTimer,
    identities: TrackIdentities | None = None,
    progress=None,
) -> tuple[list[TrackedFrame], tuple[int, int]]:
    """The first reading: every frame's faces (the pipeline's first stage, down to the weak floor) linked by
    the tracker, and how the picture moved since the frame before (for carrying faces back along a moving
    camera). Returns the per-frame plan and the frame size (width, height).

    The detectors run ahead on `detection_threads` threads (`_detected_ahead`), while this thread tracks the
    frames they have done: only the key detector's runs around unexplained candidates depend on the frames
    before, and they run here."""
    tracker = FaceTracker(tracking, fps, anonymizer.detector.threshold)
    # The camera's motion is only used to carry tracks beyond their detections.
    camera = CameraMotion() if tracking.enabled and (tracking.lookback or tracking.lookahead) else None
    # Key frames from the frame detector itself would only repeat its pass.
    key_frames = tracking.keyframe_every and tracking.keyframe_detector != anonymizer.detector.name
    key_detector = create_detector(tracking.keyframe_detector) if key_frames else None
    # The key detector also reports weak candidates; one at a place no known face accounts for makes it run on
    # the next frames too, until the frame tracker has seen it confirm_frames frames in a row or it is gone.
    key_floor = key_detector.threshold * tracking.weak_ratio if key_detector is not None else 0.0
    # The thresholds themselves: within the reading the detectors report down to their floors.
    threshold = anonymizer.detector.threshold
    key_threshold = key_detector.threshold if key_detector is not None else 1.0
    confirming = 0  # further frames the key detector runs on to confirm such a candidate
    places: list[Face] = []  # those candidates, last seen
    plan: list[TrackedFrame] = []
    size = (0, 0)
    detectors = [anonymizer.detector] + ([key_detector] if key_detector is not None else [])
    with ExitStack() as stack:
        threads = detection_threads(detectors, tracking)
        for detector in detectors:
            stack.callback(detector.share_cores, 1)  # as before for the next caller (the app's photos)
            # Set once for the whole reading, not per run: runs on several threads would restore each other's.
            # The detectors report candidates down to the weak floor; the tracker decides what they are worth.
            floor = key_floor if detector is key_detector else tracker.weak_floor
            stack.enter_context(detector.reporting_down_to(floor))
            detector.load()  # here, not by two threads at once
        pool = ThreadPoolExecutor(threads, thread_name_prefix="fmblur-detect")
        stack.callback(pool.shutdown, cancel_futures=True)  # first of the callbacks: no run left when they go on
        for detected in _detected_ahead(frames, anonymizer, key_detector, tracking, pool, timings):
            frame, faces = detected.frame, detected.faces
            size = (frame.image.shape[1], frame.image.shape[0])
            timings.restart()
            scheduled = detected.key_faces is not None  # the detection threads ran the key detector on it
            if scheduled or confirming:
                known = faces or []
                # Between key frames only around the candidates (a tenth of the cost), where the detector allows.
                key_faces = detected.key_faces
                if key_faces is None:
                    key_faces = key_detector.detect_around(frame.image, [f.box for f in places])
                key_faces = key_detector.detect(frame.image) if key_faces is None else key_faces
                accounted = [f.box for f in known if f.score >= threshold]
                accounted += [f.box for f in key_faces if f.score >= key_threshold]
                accounted += [region.face.box for region in plan[-1].covered] if plan else []
                places = unexplained([f for f in key_faces if f.score < key_threshold], accounted)
                confirming = (tracking.confirm_frames - 1 if scheduled else confirming - 1) if places else 0
                faces = with_key_frame_faces(known, key_faces, threshold, key_threshold)
                # Landmarks only for the faces the key frame added: the others keep the frame detector's.
                faces[len(known) :] = anonymizer.landmarks.apply(frame.image, faces[len(known) :])
                timings.lap("key frames")
            tracked = tracker.update(faces)
            timings.lap("tracking")
            if camera is not None:
                tracked.motion = camera.update(frame.image)
                timings.lap("camera motion")
            if identities is not None and faces is not None:
                identities.observe(frame.image, tracked.covered)
            plan.append(tracked)
            if progress is not None:
                progress(len(plan))
    return plan, size


def detection_batch(anonymizer: Anonymizer, tracking: TrackingOptions) -> int:
    """How many frames the frame detector takes in one run: `tracking.detect_batch`, or when that is 0,
    DETECT_BATCH_ON_GPU where the detector runs on CUDA and 1 on the CPU."""
    if tracking.detect_batch:
        return tracking.detect_batch
    return DETECT_BATCH_ON_GPU if "cuda" in anonymizer.detector.load().runtime().lower() else 1


def detection_threads(detectors: list[Detector], tracking: TrackingOptions) -> int:
    """How many threads run the detectors at once: `tracking.detect_threads`, or when that is 0,
    DETECTION_THREADS where every detector can share the cores between them (`Detector.share_cores`) and 1
    where one cannot. The detectors are set up for that many callers."""
    threads = tracking.detect_threads or DETECTION_THREADS
    if not all([detector.share_cores(threads) for detector in detectors]) and not tracking.detect_threads:
        threads = 1
        for detector in detectors:
            detector.share_cores(1)
    return threads


@dataclass
class _Detected:
    """A frame after the detection that needs no earlier frame: the frame detector's faces (None on frames
    `detect_every` skips) and, on a scheduled key frame, the key detector's (else None)."""

    frame: DecodedFrame
    faces: list[Face] | None
    key_faces: list[Face] | None


def _detect_frames(
    chunk: list[tuple[int, DecodedFrame]],
    anonymizer: Anonymizer,
    key_detector: Detector | None,
    tracking: TrackingOptions,
) -> tuple[list[_Detected], dict[str, float]]:
    """One job of `_detected_ahead`: the frames of `chunk` through the frame detector as one batch, and scheduled
    key frames through the key detector; with the stage times of this job."""
    timings = StageTimer()
    detected = [frame.image for index, frame in chunk if index % tracking.detect_every == 0]
    found: Iterator[list[Face]] = iter(anonymizer.find_faces_batch(detected, timings) if detected else ())
    results = []
    for index, frame in chunk:
        faces = next(found) if index % tracking.detect_every == 0 else None
        key_faces = None
        if key_detector is not None and index % tracking.keyframe_every == 0:
            timings.restart()
            key_faces = key_detector.detect(frame.image)
            timings.lap("key frames")
        results.append(_Detected(frame, faces, key_faces))
    return results, timings.ms


def _detected_ahead(
    frames: Iterator[DecodedFrame],
    anonymizer: Anonymizer,
    key_detector: Detector | None,
    tracking: TrackingOptions,
    pool: ThreadPoolExecutor,
    timings: StageTimer,
) -> Iterator[_Detected]:
    """The frames through `_detect_frames` on `pool`, `detection_batch` frames a job and about DETECTION_AHEAD
    frames in flight, handed on one by one in order; each job's stage times are added to `timings`."""
    batch = detection_batch(anonymizer, tracking)
    numbered = enumerate(frames)
    pending: deque = deque()
    while True:
        chunk = list(itertools.islice(numbered, batch))
        if chunk:
            pending.append(pool.submit(_detect_frames, chunk, anonymizer, key_detector, tracking))
        if not pending:
            return
        if chunk and len(pending) * batch < DETECTION_AHEAD:
            continue
        results, ms = pending.popleft().result()  # a detector's error is raised here, in order
        timings.add(ms)
        yield from results


def review_list(plan: list[list[CoveredFace]], fps: float) -> list[dict]:
    """Per track and reason, the frame ranges covered without a detection in that frame (and the region in the
    first of them): what a person checks."""
    spans: dict[tuple[int, str], list[tuple[int, CoveredFace]]] = {}
    for index, regions in enumerate(plan):
        for region in regions:
            if region.source in INFERRED_SOURCES:
                spans.setdefault((region.track_id, region.source), []).append((index, region))
    review = []
    for (track_id, source), found in sorted(spans.items(), key=lambda item: item[1][0][0]):
        frames = [index for index, _ in found]
        ranges, begin = [], frames[0]
        for previous, current in zip(frames, [*frames[1:], None], strict=True):
            if current != previous + 1:
                ranges.append([begin, previous])
                begin = current
        review.append(
            {
                "track_id": track_id,
                "source": source,
                "frames": ranges,
                "first_time_s": round(frames[0] / fps, 3),
                "first_box": [round(v, 1) for v in found[0][1].face.box],
            }
        )
    return review


def review_thumbnails(video: str | os.PathLike, review: list[dict], limit: int = 12) -> list[tuple[np.ndarray, str]]:
    """For the first `limit` review items: the anonymised video's frame around the region (box drawn), and a
    caption, so a person can check what tracking alone covered."""
    wanted = {item["frames"][0][0]: item for item in review[:limit]}
    thumbnails = []
    with av.open(str(video)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index > max(wanted, default=-1):
                break
            item = wanted.get(index)
            if item is None:
                continue
            image = frame.to_ndarray(format="rgb24")
            x1, y1, x2, y2 = (int(round(v)) for v in item["first_box"])
            margin = max(x2 - x1, y2 - y1)
            top, left = max(0, y1 - margin), max(0, x1 - margin)
            crop = image[top : y2 + margin, left : x2 + margin].copy()
            cv2.rectangle(crop, (x1 - left, y1 - top), (x2 - left, y2 - top), (255, 200, 0), 2)
            ranges = ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in item["frames"])
            thumbnails.append((crop, f"track {item['track_id']} · {item['source']} · frames {ranges}"))
    return thumbnails


def anonymize_video(
    source: str | os.PathLike,
    output: str | os.PathLike,
    anonymizer: Anonymizer,
    tracking: TrackingOptions | None = None,
    start: float | None = None,
    end: float | None = None,
    tracks_file: str | os.PathLike | None = None,
    progress: ProgressCallback | None = None,
    sequence_fps: float = 25.0,
) -> VideoReport:
    """Hide every face in every frame of `source`, writing an H.264 MP4 to `output`.

    tracks_file: optional .csv or .json path for the regions hidden in each frame.
    progress: called as progress(frames_done, frames_total_or_None) over both readings.
    Raises VideoReadError for unreadable input; any error leaves neither output nor tracks file.
    """
    tracking = tracking if tracking is not None else TrackingOptions()
    if start is not None and start < 0:
        raise ValueError("start must be zero or more")
    if start is not None and end is not None and end <= start:
        raise ValueError("end must be after start")
    output = Path(output)
    began = time.perf_counter()
    reader = open_source(source, sequence_fps)
    with ExitStack() as cleanup:
        cleanup.callback(reader.close)
        cleanup.enter_context(_opencv_on_one_thread())
        # Fail closed: on any error, a Ctrl-C, or a SIGTERM turned into one, the temporary files are
        # deleted and nothing half-written appears under the output names.
        video_path = cleanup.enter_context(atomic_target(output, suffix=".part.mp4"))
        writer = Mp4Writer(video_path, reader.fps, reader.audio_stream)
        cleanup.callback(writer.close)  # callbacks run last-in first-out: closed before the rename
        log = None
        if tracks_file is not None:
            tracks_path = cleanup.enter_context(atomic_target(tracks_file))
            log = TrackLog(tracks_path, "json" if Path(tracks_file).suffix.lower() == ".json" else "csv")
            cleanup.callback(log.close)
        total = _frames_in_range(reader, start, end)
        progress_total = None if total is None else 2 * total
        timings = StageTimer()

        identities = TrackIdentities(anonymizer.selection) if anonymizer.selection is not None else None
        tracked, size = find_and_track(
            iter(cleanup.enter_context(Prefetched(_video_frames(reader.frames(start, end))))),
            anonymizer,
            tracking,
            reader.fps,
            timings,
            identities,
            progress=None if progress is None else lambda done: progress(done, progress_total),
        )
        if not tracked:
            where = " in the requested time range" if start or end else ""
            raise VideoReadError(f"{source}: no video frames{where}")
        timings.restart()
        plan = complete_plan(tracked, tracking, size)
        timings.lap("tracking")
        kept_tracks: list[int] = []
        if identities is not None:
            decisions = identities.decide()
            linked = link_untracked(plan)
            kept_tracks = sorted(t for t, d in decisions.items() if not d.hide)
            plan = [
                _hidden_regions(regions, ids, kept_tracks, anonymizer.obfuscation.mask_scale, size)
                for regions, ids in zip(plan, linked, strict=True)
            ]
            timings.lap("identity")

        # The second reading: hide and write, audio and timestamps as they came.
        again = open_source(source, sequence_fps)
        cleanup.callback(again.close)
        measure_every = max(1, round(reader.fps))  # the privacy meter looks at one frame a second
        privacy_reports = []
        first_pts: int | None = None
        index = written = 0
        # Frames are hidden on worker threads (OpenCV releases the GIL), HIDING_AHEAD at most in flight, and
        # written strictly in order with the audio packets between them. The privacy meter's embedder is not
        # known to be thread-safe, so with it frames are hidden one at a time.
        workers = 1 if anonymizer.privacy_meter is not None else HIDING_THREADS
        hiding = ThreadPoolExecutor(workers, thread_name_prefix="fmblur-hide")
        cleanup.callback(hiding.shutdown, cancel_futures=True)  # waits for running frames; on an error, no new one
        pending: deque = deque()

        def write_next() -> None:
            nonlocal written
            item, job = pending.popleft()
            if job is None:
                writer.write_audio(item, start or 0.0)
                return
            (hidden, report), hiding_ms = job.result()  # a hiding error is raised here, in order
            timings.add(hiding_ms)
            if report is not None:
                privacy_reports.append(report)
            timings.restart()
            writer.write_video(hidden, item.pts - first_pts, item.time_base)
            timings.lap("encode")
            if log is not None:
                log.write(written, item.time - float(first_pts * item.time_base), plan[written])
            written += 1
            if progress is not None:
                progress(len(plan) + written, progress_total)

        for item in cleanup.enter_context(Prefetched(again.frames(start, end))):
            if isinstance(item, av.Packet):
                pending.append((item, None))
            else:
                if index >= len(plan):
                    raise VideoReadError(f"{source}: the second reading gave more frames than the first")
                first_pts = item.pts if first_pts is None else first_pts  # timestamps restart at 0 in the output
                faces = [c.face for c in plan[index]]
                pending.append(
                    (item, hiding.submit(_timed_hide, anonymizer, item.image, faces, index % measure_every == 0))
                )
                index += 1
            while len(pending) > HIDING_AHEAD:
                write_next()
        while pending:
            write_next()
        if index != len(plan):
            raise VideoReadError(f"{source}: the second reading gave fewer frames than the first")
        writer.finish()
        if log is not None:
            log.finish()
    elapsed = time.perf_counter() - began
    frames = len(plan)
    return VideoReport(
        output=output,
        frames=frames,
        input_fps=reader.fps,
        duration_s=frames / reader.fps,
        faces_hidden=sum(len(regions) for regions in plan),
        audio=writer.audio_mode,
        seconds=elapsed,
        timings_ms={stage: ms / frames for stage, ms in timings.ms.items()},
        tracks_file=Path(tracks_file) if tracks_file is not None else None,
        kept_tracks=kept_tracks,
        review=review_list(plan, reader.fps),
        privacy=_merged(privacy_reports),
    )


# Threads running the detectors on frames of their own, each session on a share of the cores (`detection_threads`).
# The first reading of the leak bench's clip1 (720p, the video default) took 20.1-20.5 s on 2 cores against
# 22.8-22.9 s with the detectors on the tracker's thread (two runs each): the cores were busy 187 % of the time
# instead of 165 %.
DETECTION_THREADS = 2
# Frames detected ahead of the tracker: while one thread runs a key frame (the `thorough` preset: 3 passes), the
# others go on with the frames after it.
DETECTION_AHEAD = 16
# Frames per run of the frame detector where it runs on CUDA: a GPU takes a batch of frames in little more time
# than one. Not yet timed on a GPU (docs/results/gpu.md); on the CPU batches were slower per frame.
DETECT_BATCH_ON_GPU = 8
HIDING_THREADS = 2  # the machines this runs on have 2 cores or more; encoding has threads of its own
HIDING_AHEAD = 4  # frames decoded and being hidden ahead of the one being written


@contextmanager
def _opencv_on_one_thread() -> Iterator[None]:
    """OpenCV runs each call on one thread within the block. Video hides and detects frames on threads of their
    own, which OpenCV's threads within each call (blurs, resizes) only contended with: the leak bench's clip1
    (720p, video default) took 35.0-36.2 s against 37.1-39.1 s (two runs each), with the same pixels and the same
    camera motion. Process-wide in OpenCV, so restored after."""
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(threads)


def _timed_hide(anonymizer: Anonymizer, image: np.ndarray, faces: list, measure: bool):
    """`anonymizer.hide` on a worker thread, with a stage timer of its own (the writing thread has one too)."""
    timings = StageTimer()
    return anonymizer.hide(image, faces, timings, measure=measure), timings.ms


# A region carried beyond its track's detections is left out where it would cover this much of a kept person's
# face detected in that frame: the detection there outweighs an extrapolation (typically a false positive on the
# person's shirt, carried back along their motion until it reaches their chin).
KEPT_FACE_SHARE = 0.2


def _hidden_regions(
    regions: list[CoveredFace], ids: list[int], kept_tracks: list[int], mask_scale: float, size: tuple[int, int]
) -> list[CoveredFace]:
    """A frame's regions once an identity selection has decided: kept tracks' regions are left out, and so are
    regions carried beyond their track whose obfuscated area (`region_box`, in a frame of `size`) would cover a
    kept face detected in this frame."""
    kept_faces = [
        np.asarray(c.face.box, np.float64)
        for c, track in zip(regions, ids, strict=True)
        if track in kept_tracks and c.source == "detected"
    ]
    hidden = []
    for region, track in zip(regions, ids, strict=True):
        if track >= 0 and track in kept_tracks:
            continue
        if region.source in CARRIED_SOURCES and kept_faces:
            area = np.asarray(region_box(region.face, mask_scale, *size), np.float64)
            if any(_covered_share(face, area) >= KEPT_FACE_SHARE for face in kept_faces):
                continue
        hidden.append(region)
    return hidden


def _covered_share(face: np.ndarray, cover: np.ndarray) -> float:
    """The share of `face`'s box inside `cover`."""
    width = max(0.0, min(face[2], cover[2]) - max(face[0], cover[0]))
    height = max(0.0, min(face[3], cover[3]) - max(face[1], cover[1]))
    return width * height / max((face[2] - face[0]) * (face[3] - face[1]), 1e-6)


def _merged(reports: list[PrivacyReport]) -> PrivacyReport | None:
    """One privacy report over the measured frames."""
    if not reports:
        return None
    return dataclasses.replace(reports[0], faces=[face for report in reports for face in report.faces])
