"""Read any still image into RGB uint8, and write results atomically without metadata.

Reading follows EXIF orientation (so boxes land where a viewer sees the face), brings every colour mode
(grey, palette, RGBA, CMYK, 16-bit) to 8-bit RGB, and turns every failure into one ImageReadError line.
Writing drops EXIF and embedded thumbnails: a JPEG's EXIF thumbnail is an unblurred copy of the photo.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from fmblur.atomic import atomic_target

# 12000 x 9000 (108 MP) photos must open; past this the decoded array alone would be over 450 MB.
MAX_PIXELS = 150_000_000

# Formats written back as they came in (others are written as PNG), with their save options.
SAVE_OPTIONS: dict[str, dict] = {
    "JPEG": {"quality": 95, "subsampling": 0},
    "PNG": {"compress_level": 6},
    "WEBP": {"quality": 95},
    "BMP": {},
    "TIFF": {"compression": "tiff_deflate"},
    "GIF": {},
}
# File suffix -> the format an output with that suffix is written in. A folder scan picks up these
# suffixes; a file of another kind passed by name is still tried, and its result written as PNG.
FORMAT_BY_SUFFIX = {
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".png": "PNG",
    ".webp": "WEBP",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".gif": "GIF",
}
IMAGE_SUFFIXES = tuple(FORMAT_BY_SUFFIX)


class ImageReadError(ValueError):
    """An input that cannot be read as a still image; the message says why in one line."""


def read_image(source: str | os.PathLike | bytes | BinaryIO) -> tuple[np.ndarray, str]:
    """(RGB uint8 array, Pillow format name) of a still image file, path or bytes."""
    name = str(source) if isinstance(source, (str, os.PathLike)) else "image"
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise ImageReadError(f"{name}: no such file")
        if path.stat().st_size == 0:
            raise ImageReadError(f"{name}: empty file (0 bytes)")
        data = path.read_bytes()
    elif isinstance(source, bytes):
        data = source
    else:
        data = source.read()
    if len(data) == 0:
        raise ImageReadError(f"{name}: empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            # We enforce our own pixel limit below; Pillow's bomb warning would only repeat it.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as opened:
                width, height = opened.size
                if width * height > MAX_PIXELS:
                    megapixels, limit = width * height / 1e6, MAX_PIXELS / 1e6
                    raise ImageReadError(
                        f"{name}: {width}x{height} is too large ({megapixels:.0f} MP; limit {limit:.0f} MP)"
                    )
                if getattr(opened, "n_frames", 1) > 1:
                    raise ImageReadError(
                        f"{name}: has {opened.n_frames} frames; anonymise animations with `fmblur video`"
                    )
                image_format = opened.format or "PNG"
                opened.load()
                rgb = to_rgb_array(ImageOps.exif_transpose(opened))
    except ImageReadError:
        raise
    except UnidentifiedImageError:
        raise ImageReadError(f"{name}: not an image, or a format this tool cannot read") from None
    except Image.DecompressionBombError as error:
        raise ImageReadError(f"{name}: too large ({error})") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageReadError(f"{name}: truncated or corrupt image ({error})") from None
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ImageReadError(f"{name}: image has no pixels")
    return rgb, image_format


def to_rgb_array(image: Image.Image) -> np.ndarray:
    """8-bit RGB array of a Pillow image in any mode."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        # 16-bit and 32-bit greyscale: rescale to 8 bits instead of letting Pillow clip at 255.
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or values.max(initial=0) > 255 else 255.0
        grey = np.clip(values / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(grey[..., None], 3, axis=2))
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.ascontiguousarray(np.asarray(image, dtype=np.uint8))


def write_image(image: np.ndarray, path: str | os.PathLike, image_format: str) -> None:
    """Write RGB uint8 `image` to `path` atomically (temporary file, then rename); no metadata is kept."""
    if image_format not in SAVE_OPTIONS:
        image_format = "PNG"
    with atomic_target(path) as temporary:
        Image.fromarray(image, "RGB").save(temporary, format=image_format, **SAVE_OPTIONS[image_format])
