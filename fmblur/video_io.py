"""Video input and output: decode any container FFmpeg (PyAV) reads, or a folder of images, into RGB frames and
audio packets; encode H.264 yuv420p MP4 with faststart (browsers play it) with the input's audio; the per-frame
regions as CSV or JSON. What happens to the frames in between is `fmblur.video`'s business."""

from __future__ import annotations

import csv
import json
import os
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TextIO

import av
import numpy as np

from fmblur.image_io import IMAGE_SUFFIXES, ImageReadError, read_image
from fmblur.tracking import CoveredFace

# Audio codecs an MP4 can carry as they are; anything else (PCM, Vorbis...) is re-encoded to AAC.
MP4_AUDIO_COPY = {"aac", "mp3", "alac", "opus", "flac", "ac3", "eac3"}
VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".wmv", ".flv", ".gif")
ProgressCallback = Callable[[int, int | None], None]


class VideoReadError(ValueError):
    """An input that cannot be read as a video; the message says why in one line."""


@dataclass
class DecodedFrame:
    image: np.ndarray
    pts: int
    time_base: Fraction

    @property
    def time(self) -> float:
        return float(self.pts * self.time_base)


class VideoSource:
    """Frames (and audio packets) of one input, with its frame rate and a frame count when known."""

    fps: float = 25.0
    frame_count: int | None = None
    audio_stream: av.audio.stream.AudioStream | None = None

    def frames(self, start: float | None, end: float | None) -> Iterator[DecodedFrame | av.Packet]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class ContainerSource(VideoSource):
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

    def frames(self, start: float | None, end: float | None) -> Iterator[DecodedFrame | av.Packet]:
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
                    item = DecodedFrame(frame.to_ndarray(format="rgb24"), int(frame.pts), frame.time_base)
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


class SequenceSource(VideoSource):
    def __init__(self, folder: Path, fps: float) -> None:
        self.files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise VideoReadError(f"{folder}: folder holds no images for an image sequence")
        self.fps = fps
        self.frame_count = len(self.files)
        self.time_base = Fraction(1, 1) / Fraction(fps).limit_denominator(100000)

    def frames(self, start: float | None, end: float | None) -> Iterator[DecodedFrame | av.Packet]:
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
            yield DecodedFrame(image, index, self.time_base)


def open_source(path: str | os.PathLike, sequence_fps: float = 25.0) -> VideoSource:
    path = Path(path)
    if path.is_dir():
        return SequenceSource(path, sequence_fps)
    if not path.is_file():
        raise VideoReadError(f"{path}: no such file or folder")
    if path.stat().st_size == 0:
        raise VideoReadError(f"{path}: empty file (0 bytes)")
    return ContainerSource(path)


def video_duration(path: str | os.PathLike) -> float:
    """Seconds of video in a file (from its header, or frames / rate), without decoding it."""
    source = open_source(path)
    try:
        if isinstance(source, ContainerSource):
            stream = source.video_stream
            if stream.duration is not None and stream.time_base is not None:
                return float(stream.duration * stream.time_base)
            if source.container.duration is not None:
                return source.container.duration / av.time_base
        return (source.frame_count or 0) / source.fps
    finally:
        source.close()


class Mp4Writer:
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


class TrackLog:
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


_DONE = object()


class Prefetched:
    """Items of an iterator produced by a background thread, up to `depth` ahead: decoding (which releases the
    GIL) overlaps detection and encoding on the other core. An error in the thread is raised where its item
    would have come, so a run still stops at the frame that failed. Use it as a context manager: leaving it
    stops and joins the thread, so the source can be closed safely afterwards."""

    def __init__(self, items: Iterator, depth: int = 8) -> None:
        self._items = items
        self._buffer: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._produce, name="fmblur-decode", daemon=True)

    def _produce(self) -> None:
        try:
            for item in self._items:
                if self._stop.is_set():
                    return
                self._buffer.put(item)
            self._buffer.put(_DONE)
        except BaseException as error:  # handed to the consumer, raised there
            self._buffer.put(error)

    def __enter__(self) -> Prefetched:
        self._worker.start()
        return self

    def __iter__(self) -> Iterator:
        while True:
            item = self._buffer.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        while self._worker.is_alive():  # unblock a producer waiting on a full queue, then let it finish
            try:
                self._buffer.get_nowait()
            except queue.Empty:
                self._worker.join(timeout=0.05)
