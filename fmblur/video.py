"""Anonymise videos as a stream: decode, detect, track, hide, encode; audio copied, timestamps kept.

Input: any container FFmpeg (PyAV) reads (MP4, MOV, MKV, WebM, AVI, animated GIF...) or a folder of images
(an image sequence, played at `sequence_fps`). Output: H.264 yuv420p MP4 with faststart, which browsers
play, written to a temporary file and renamed at the end: an error or Ctrl-C leaves no output behind.
Memory stays flat: only the look-back buffer's few frames are held.
Privacy fails closed: a frame that cannot be decoded or processed stops the run; it is never written as is.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TextIO

import av
import numpy as np

from fmblur.atomic import atomic_target
from fmblur.identity.tracks import TrackIdentities, link_untracked
from fmblur.image_io import IMAGE_SUFFIXES, ImageReadError, read_image
from fmblur.obfuscate import obfuscate
from fmblur.pipeline import Anonymizer
from fmblur.tracking import CoveredFace, FaceTracker, LookbackBuffer, PendingFrame, TrackingOptions

# Audio codecs an MP4 can carry as they are; anything else (PCM, Vorbis...) is re-encoded to AAC.
MP4_AUDIO_COPY = {"aac", "mp3", "alac", "opus", "flac", "ac3", "eac3"}
VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".wmv", ".flv", ".gif")
ProgressCallback = Callable[[int, int | None], None]


class VideoReadError(ValueError):
    """An input that cannot be read as a video; the message says why in one line."""


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

    @property
    def processing_fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("inf")


@dataclass
class _Frame:
    image: np.ndarray
    pts: int
    time_base: Fraction

    @property
    def time(self) -> float:
        return float(self.pts * self.time_base)


class _Source:
    """Frames (and audio packets) of one input, with its frame rate and a frame count when known."""

    fps: float = 25.0
    frame_count: int | None = None
    audio_stream: av.audio.stream.AudioStream | None = None

    def frames(self, start: float | None, end: float | None) -> Iterator[_Frame | av.Packet]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class _ContainerSource(_Source):
    def __init__(self, path: Path) -> None:
        try:
            self.container = av.open(str(path), mode="r")
        except (av.error.FFmpegError, UnicodeDecodeError) as error:
            raise VideoReadError(f"{path}: not a video, or a format this tool cannot read ({error})") from None
        if not self.container.streams.video:
            self.container.close()
            raise VideoReadError(f"{path}: has no video stream")
        self.path = path
        self.video_stream = self.container.streams.video[0]
        self.video_stream.thread_type = "AUTO"
        rate = self.video_stream.average_rate or self.video_stream.guessed_rate
        self.fps = float(rate) if rate else 25.0
        self.frame_count = self.video_stream.frames or None
        audio = self.container.streams.audio
        self.audio_stream = audio[0] if audio else None

    def frames(self, start: float | None, end: float | None) -> Iterator[_Frame | av.Packet]:
        streams = [self.video_stream] + ([self.audio_stream] if self.audio_stream is not None else [])
        if start:
            # Seek to the keyframe before `start`; frames before it are decoded and dropped below.
            self.container.seek(int(start * av.time_base), backward=True, any_frame=False)
        index = 0
        try:
            for packet in self.container.demux(*streams):
                if packet.stream.type == "audio":
                    if packet.pts is not None and packet.size > 0:
                        yield packet
                    continue
                for frame in packet.decode():
                    if frame.pts is None:
                        frame.pts = index  # some raw streams carry no timestamps: count frames
                    item = _Frame(frame.to_ndarray(format="rgb24"), int(frame.pts), frame.time_base)
                    index += 1
                    if start is not None and item.time < start:
                        continue
                    if end is not None and item.time >= end:
                        return
                    yield item
        except av.error.FFmpegError as error:
            raise VideoReadError(f"{self.path}: corrupt video data after {index} frames ({error})") from None
        if start is None and end is None and self.frame_count and index < self.frame_count:
            # The container's index promised more frames than the data holds: a cut-off download or copy.
            raise VideoReadError(f"{self.path}: truncated, only {index} of {self.frame_count} frames could be read")

    def close(self) -> None:
        self.container.close()


class _SequenceSource(_Source):
    def __init__(self, folder: Path, fps: float) -> None:
        self.files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise VideoReadError(f"{folder}: folder holds no images for an image sequence")
        self.fps = fps
        self.frame_count = len(self.files)
        self.time_base = Fraction(1, 1) / Fraction(fps).limit_denominator(100000)

    def frames(self, start: float | None, end: float | None) -> Iterator[_Frame | av.Packet]:
        size = None
        for index, path in enumerate(self.files):
            time_s = index / self.fps
            if start is not None and time_s < start:
                continue
            if end is not None and time_s >= end:
                return
            try:
                image, _ = read_image(path)
            except ImageReadError as error:
                raise VideoReadError(f"image sequence frame {index}: {error}") from None
            if size is None:
                size = image.shape
            elif image.shape != size:
                raise VideoReadError(f"{path}: size {image.shape[1]}x{image.shape[0]} differs from the first frame's")
            yield _Frame(image, index, self.time_base)


def open_source(path: str | os.PathLike, sequence_fps: float = 25.0) -> _Source:
    path = Path(path)
    if path.is_dir():
        return _SequenceSource(path, sequence_fps)
    if not path.is_file():
        raise VideoReadError(f"{path}: no such file or folder")
    if path.stat().st_size == 0:
        raise VideoReadError(f"{path}: empty file (0 bytes)")
    return _ContainerSource(path)


def video_duration(path: str | os.PathLike) -> float:
    """Seconds of video in a file (from its header, or frames / rate), without decoding it."""
    source = open_source(path)
    try:
        if isinstance(source, _ContainerSource):
            stream = source.video_stream
            if stream.duration is not None and stream.time_base is not None:
                return float(stream.duration * stream.time_base)
            if source.container.duration is not None:
                return source.container.duration / av.time_base
        return (source.frame_count or 0) / source.fps
    finally:
        source.close()


class _Mp4Writer:
    """H.264 MP4 (plus the input's audio) to `path`; `finish` flushes the encoders, `close` always runs."""

    def __init__(self, path: Path, fps: float, audio: av.audio.stream.AudioStream | None) -> None:
        self.container = av.open(str(path), mode="w", format="mp4", options={"movflags": "+faststart"})
        self.fps = Fraction(fps).limit_denominator(100000) if fps > 0 else Fraction(25)
        self.video = None
        self.audio_out, self.audio_mode = None, "none"
        self._audio_offset: int | None = None
        # Audio that arrives before the first video frame waits: the MP4 header is written on the first
        # mux, and it must already list the video stream (which needs the frame size).
        self._early_audio: list[av.Packet] = []
        if audio is not None:
            if audio.codec_context.name in MP4_AUDIO_COPY:
                self.audio_out = self.container.add_stream_from_template(audio)
                self.audio_mode = "copied"
            else:
                self.audio_out = self.container.add_stream("aac", rate=audio.codec_context.sample_rate or 48000)
                self.audio_mode = "re-encoded"

    def _open_video(self, width: int, height: int, time_base: Fraction) -> None:
        self.video = self.container.add_stream("libx264", rate=self.fps)
        self.video.width, self.video.height = width, height
        self.video.pix_fmt = "yuv420p"
        # The input's time base: variable frame timing survives.
        self.video.codec_context.time_base = time_base
        self.video.time_base = time_base
        self.video.options = {"crf": "20", "preset": "veryfast"}

    def write_video(self, image: np.ndarray, pts: int, time_base: Fraction) -> None:
        height, width = image.shape[:2]
        if height % 2 or width % 2:
            # yuv420p needs even sides: repeat the last row/column rather than drop pixels.
            image = np.pad(image, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")
        if self.video is None:
            self._open_video(image.shape[1], image.shape[0], time_base)
            for packet in self._early_audio:
                self._mux_audio(packet)
            self._early_audio.clear()
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts, frame.time_base = pts, time_base
        for packet in self.video.encode(frame):
            self.container.mux(packet)

    def write_audio(self, packet: av.Packet, start_s: float) -> None:
        if self.audio_out is None:
            return
        if self._audio_offset is None:
            self._audio_offset = int(round(start_s / packet.time_base)) if start_s else 0
        if self.video is None:
            self._early_audio.append(packet)
            return
        self._mux_audio(packet)

    def _mux_audio(self, packet: av.Packet) -> None:
        if self.audio_mode == "copied":
            packet.pts -= self._audio_offset
            if packet.dts is not None:
                packet.dts -= self._audio_offset
            if packet.pts < 0 and self._audio_offset > 0:
                return  # before the requested start (negative pts without trimming is encoder priming: kept)
            packet.stream = self.audio_out
            self.container.mux(packet)
            return
        for frame in packet.decode():
            frame.pts = None  # let the encoder number the re-encoded samples
            for out_packet in self.audio_out.encode(frame):
                self.container.mux(out_packet)

    def finish(self) -> None:
        if self.video is not None:
            for packet in self.video.encode():
                self.container.mux(packet)
        if self.audio_out is not None and self.audio_mode == "re-encoded":
            for packet in self.audio_out.encode():
                self.container.mux(packet)

    def close(self) -> None:
        self.container.close()


class _TrackLog:
    """Per-frame regions to CSV or JSON, streamed one frame at a time."""

    def __init__(self, path: Path, file_format: str) -> None:
        self.format = file_format
        self.stream: TextIO = open(path, "w", newline="")
        self.first = True
        if self.format == "csv":
            self.csv = csv.writer(self.stream)
            self.csv.writerow(["frame", "time_s", "track_id", "source", "x1", "y1", "x2", "y2", "score"])
        else:
            self.stream.write('{"frames": [\n')

    def write(self, index: int, time_s: float, covered: list[CoveredFace]) -> None:
        if self.format == "csv":
            for item in covered:
                box = [f"{v:.1f}" for v in item.face.box]
                self.csv.writerow([index, f"{time_s:.4f}", item.track_id, item.source, *box, f"{item.face.score:.4f}"])
            return
        regions = [{"track_id": c.track_id, "source": c.source, **c.face.to_json()} for c in covered]
        record = {"frame": index, "time_s": round(time_s, 4), "regions": regions}
        self.stream.write(("" if self.first else ",\n") + json.dumps(record))
        self.first = False

    def finish(self) -> None:
        if self.format == "json":
            self.stream.write("\n]}\n")

    def close(self) -> None:
        self.stream.close()


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
    progress: called as progress(frames_done, frames_total_or_None) after each written frame.
    Raises VideoReadError for unreadable input; any error leaves neither output nor tracks file.
    """
    tracking = tracking if tracking is not None else TrackingOptions()
    if start is not None and start < 0:
        raise ValueError("start must be zero or more")
    if start is not None and end is not None and end <= start:
        raise ValueError("end must be after start")
    output = Path(output)
    began = time.perf_counter()
    kept_tracks: list[int] = []
    reader = open_source(source, sequence_fps)
    with ExitStack() as cleanup:
        cleanup.callback(reader.close)
        # Fail closed: on any error, a Ctrl-C, or a SIGTERM turned into one, the temporary files are
        # deleted and nothing half-written appears under the output names.
        video_path = cleanup.enter_context(atomic_target(output, suffix=".part.mp4"))
        writer = _Mp4Writer(video_path, reader.fps, reader.audio_stream)
        cleanup.callback(writer.close)  # callbacks run last-in first-out: closed before the rename
        log = None
        if tracks_file is not None:
            tracks_path = cleanup.enter_context(atomic_target(tracks_file))
            log_format = "json" if Path(tracks_file).suffix.lower() == ".json" else "csv"
            log = _TrackLog(tracks_path, log_format)
            cleanup.callback(log.close)
        tracker = FaceTracker(tracking, reader.fps)
        buffer = LookbackBuffer(tracking.lookback if tracking.enabled else 0)
        total = reader.frame_count
        if total is not None and (start or end):
            last = min(total / reader.fps, end) if end is not None else total / reader.fps
            total = max(0, math.ceil((last - (start or 0)) * reader.fps))
        counts = {"frames": 0, "faces": 0}
        timings = {"detect": 0.0, "landmarks": 0.0, "obfuscate": 0.0, "encode": 0.0}
        first_pts: list[int] = []  # timestamps restart at 0 in the output
        # With an identity selection the video is read twice: once to track and decide every track from
        # its best frames, once to write, so a decision never changes in the middle of a track.
        passes = 1 if anonymizer.selection is None else 2
        progress_total = None if total is None else total * passes

        def emit(frame: _Frame, index: int, covered: list[CoveredFace]) -> None:
            if not first_pts:
                first_pts.append(frame.pts)
            tick = time.perf_counter()
            hidden = obfuscate(frame.image, [c.face for c in covered], anonymizer.obfuscation)
            timings["obfuscate"] += time.perf_counter() - tick
            tick = time.perf_counter()
            writer.write_video(hidden, frame.pts - first_pts[0], frame.time_base)
            timings["encode"] += time.perf_counter() - tick
            if log is not None:
                log.write(index, frame.time - float(first_pts[0] * frame.time_base), covered)
            counts["frames"] += 1
            counts["faces"] += len(covered)
            if progress is not None:
                progress(counts["frames"] + (passes - 1) * (total or 0), progress_total)

        def analysed(items: Iterator[_Frame | av.Packet], observe=None) -> Iterator[PendingFrame | av.Packet]:
            index = 0
            for item in items:
                if isinstance(item, av.Packet):
                    yield item
                    continue
                faces = None
                if index % tracking.detect_every == 0:
                    tick = time.perf_counter()
                    faces = anonymizer.detector.detect(item.image)
                    detected = time.perf_counter()
                    faces = anonymizer.landmarks.apply(item.image, faces)
                    timings["detect"] += detected - tick
                    timings["landmarks"] += time.perf_counter() - detected
                covered = tracker.update(faces)
                if observe is not None and faces is not None:
                    observe(item.image, covered)
                yield from buffer.push(PendingFrame(index, item, covered))
                index += 1
            yield from buffer.flush()

        if anonymizer.selection is None:
            for ready in analysed(reader.frames(start, end)):
                if isinstance(ready, av.Packet):
                    writer.write_audio(ready, start or 0.0)
                else:
                    emit(ready.payload, ready.index, ready.covered)  # type: ignore[arg-type]
        else:
            identities = TrackIdentities(anonymizer.selection)
            plan: list[list[CoveredFace]] = []
            for ready in analysed(reader.frames(start, end), identities.observe):
                if isinstance(ready, PendingFrame):
                    plan.append(ready.covered)
                    if progress is not None:
                        progress(len(plan), progress_total)
            tick = time.perf_counter()
            decisions = identities.decide()
            timings["identity"] = time.perf_counter() - tick
            linked = link_untracked(plan)
            kept_tracks.extend(sorted(t for t, d in decisions.items() if not d.hide))
            again = open_source(source, sequence_fps)
            cleanup.callback(again.close)
            index = 0
            for item in again.frames(start, end):
                if isinstance(item, av.Packet):
                    writer.write_audio(item, start or 0.0)
                    continue
                if index >= len(plan):
                    raise VideoReadError(f"{source}: the second reading gave more frames than the first")
                hide = [
                    c
                    for c, track in zip(plan[index], linked[index], strict=False)
                    if track < 0 or track not in decisions or decisions[track].hide
                ]
                emit(item, index, hide)
                index += 1
            if index != len(plan):
                raise VideoReadError(f"{source}: the second reading gave fewer frames than the first")
        if counts["frames"] == 0:
            where = " in the requested time range" if start or end else ""
            raise VideoReadError(f"{source}: no video frames{where}")
        writer.finish()
        if log is not None:
            log.finish()
    elapsed = time.perf_counter() - began
    frames = counts["frames"]
    per_frame = {stage: 1000 * seconds / frames for stage, seconds in timings.items()}
    return VideoReport(
        output=output,
        frames=frames,
        input_fps=reader.fps,
        duration_s=frames / reader.fps,
        faces_hidden=counts["faces"],
        audio=writer.audio_mode,
        seconds=elapsed,
        timings_ms=per_frame,
        tracks_file=Path(tracks_file) if tracks_file is not None else None,
        kept_tracks=kept_tracks,
    )
