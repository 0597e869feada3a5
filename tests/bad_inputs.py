"""Hostile and odd input files, generated from the CC0 examples and the test clip.

Each maker writes one file into a folder and returns its path; EXPECTED says what a correct run does:
"ok" (anonymised result) or an error whose one-line message contains the given text.
"""

from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from tests.conftest import EXAMPLES_DIR, REPO

PHOTO = EXAMPLES_DIR / "maksssksksss5.jpg"
CLIP = REPO / "tests" / "data" / "selfie_2s_audio.mp4"


def _photo() -> Image.Image:
    return Image.open(PHOTO).convert("RGB")


def _encoded(image: Image.Image, image_format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def write_video(path: Path, frames: list[np.ndarray], pts: list[int], time_base: Fraction) -> Path:
    """H.264 MP4 of `frames` at the given timestamps (high quality: darkened test frames stay as made)."""
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "12"}
        stream.codec_context.time_base = time_base
        stream.time_base = time_base
        for image, timestamp in zip(frames, pts, strict=False):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = timestamp, time_base
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def clip_frames(count: int) -> list[np.ndarray]:
    with av.open(str(CLIP)) as container:
        return [f.to_ndarray(format="rgb24") for _, f in zip(range(count), container.decode(video=0), strict=False)]


# Image inputs ------------------------------------------------------------------------------------------------


def not_an_image(folder: Path) -> Path:
    path = folder / "notes.jpg"
    path.write_text("shopping list: masks, gloves\n")
    return path


def truncated_jpeg(folder: Path) -> Path:
    path = folder / "cut.jpg"
    path.write_bytes(_encoded(_photo(), "JPEG")[:3000])
    return path


def truncated_png(folder: Path) -> Path:
    path = folder / "cut.png"
    data = _encoded(_photo(), "PNG")
    path.write_bytes(data[: len(data) // 2])
    return path


def zero_bytes(folder: Path) -> Path:
    path = folder / "empty.png"
    path.write_bytes(b"")
    return path


def one_pixel(folder: Path) -> Path:
    path = folder / "dot.png"
    Image.new("RGB", (1, 1), (200, 150, 120)).save(path)
    return path


def greyscale(folder: Path) -> Path:
    path = folder / "grey.jpg"
    _photo().convert("L").save(path, quality=95)
    return path


def rgba(folder: Path) -> Path:
    path = folder / "alpha.png"
    image = _photo().convert("RGBA")
    image.putalpha(200)
    image.save(path)
    return path


def palette(folder: Path) -> Path:
    path = folder / "palette.png"
    _photo().convert("P", palette=Image.Palette.ADAPTIVE, colors=256).save(path)
    return path


def sixteen_bit(folder: Path) -> Path:
    path = folder / "deep.png"
    grey = np.asarray(_photo().convert("L"), np.uint16) * 257
    Image.fromarray(grey.astype(np.uint16)).save(path)
    return path


def cmyk_jpeg(folder: Path) -> Path:
    path = folder / "print.jpg"
    _photo().convert("CMYK").save(path, quality=95)
    return path


def exif_rotated(folder: Path) -> Path:
    """Stored sideways with EXIF orientation 6: a viewer shows it upright, and so must the result."""
    path = folder / "phone.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    _photo().transpose(Image.Transpose.ROTATE_90).save(path, exif=exif.tobytes(), quality=95)
    return path


def animated_gif(folder: Path) -> Path:
    path = folder / "anim.gif"
    frames = [_photo(), _photo().transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=200, loop=0)
    return path


IMAGE_CASES = {
    "not_an_image": (not_an_image, "not an image"),
    "truncated_jpeg": (truncated_jpeg, "truncated or corrupt"),
    "truncated_png": (truncated_png, "truncated or corrupt"),
    "zero_bytes": (zero_bytes, "empty file"),
    "one_pixel": (one_pixel, "ok"),
    "greyscale": (greyscale, "ok"),
    "rgba": (rgba, "ok"),
    "palette": (palette, "ok"),
    "sixteen_bit": (sixteen_bit, "ok"),
    "cmyk_jpeg": (cmyk_jpeg, "ok"),
    "exif_rotated": (exif_rotated, "ok"),
    "animated_gif": (animated_gif, "fmblur video"),
}


# Video inputs ------------------------------------------------------------------------------------------------


def text_named_mp4(folder: Path) -> Path:
    path = folder / "holiday.mp4"
    path.write_text("this is a text file with a video's name\n")
    return path


def no_frames(folder: Path) -> Path:
    """A valid AVI header with a video stream and not one frame (an MP4 without samples drops the track)."""
    path = folder / "blank.avi"
    with av.open(str(path), "w", format="avi") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width = stream.height = 64
        stream.pix_fmt = "yuv420p"
        container.start_encoding()
    return path


def audio_only(folder: Path) -> Path:
    path = folder / "voice.mp4"
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=44100)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 44100, 0
        for packet in list(stream.encode(frame)) + list(stream.encode()):
            container.mux(packet)
    return path


def truncated_video(folder: Path) -> Path:
    path = folder / "cut.mp4"
    path.write_bytes(CLIP.read_bytes()[:20000])
    return path


def no_audio(folder: Path) -> Path:
    frames = clip_frames(20)
    return write_video(folder / "silent.mp4", frames, list(range(20)), Fraction(1, 25))


VFR_PTS = [0, 40, 80, 200, 240, 400, 440, 480, 700, 740]  # milliseconds: uneven gaps


def variable_frame_rate(folder: Path) -> Path:
    frames = clip_frames(len(VFR_PTS))
    return write_video(folder / "vfr.mp4", frames, VFR_PTS, Fraction(1, 1000))


def animated_gif_video(folder: Path) -> Path:
    return animated_gif(folder)


VIDEO_CASES = {
    "text_named_mp4": (text_named_mp4, "not a video"),
    "no_frames": (no_frames, "no video frames"),
    "audio_only": (audio_only, "has no video stream"),
    "truncated_video": (truncated_video, "truncated"),
    "no_audio": (no_audio, "ok"),
    "variable_frame_rate": (variable_frame_rate, "ok"),
    "animated_gif": (animated_gif_video, "ok"),
}
