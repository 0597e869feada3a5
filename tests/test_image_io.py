"""Every kind of still-image input gives either a correct RGB array or one clear ImageReadError."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from fmblur.detectors import create_detector
from fmblur.image_io import ImageReadError, read_image, write_image


def save(image: Image.Image, path, **options):
    image.save(path, **options)
    return path


@pytest.fixture(scope="module")
def photo(example) -> Image.Image:
    return Image.fromarray(example.image)


def test_rgb_jpeg_roundtrip(tmp_path, example):
    path = tmp_path / "out.jpg"
    write_image(example.image, path, "JPEG")
    again, image_format = read_image(path)
    assert image_format == "JPEG" and again.shape == example.image.shape
    assert np.abs(again.astype(int) - example.image).mean() < 3
    assert not list(tmp_path.glob("*.part")), "no temporary file is left behind"


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK", "LA", "1"])
def test_colour_modes_become_rgb(tmp_path, photo, mode):
    suffix = ".jpg" if mode in ("L", "CMYK", "1") else ".png"
    path = save(photo.convert(mode), tmp_path / f"photo{suffix}")
    image, _ = read_image(path)
    assert image.dtype == np.uint8 and image.shape == (photo.height, photo.width, 3)


def test_colour_modes_keep_faces_findable(tmp_path, photo):
    detector = create_detector("retinaface")
    expected = len(detector.detect(np.asarray(photo)))
    for mode in ("RGBA", "P", "CMYK"):
        path = save(photo.convert(mode), tmp_path / f"photo_{mode}.{'jpg' if mode == 'CMYK' else 'png'}")
        image, _ = read_image(path)
        assert abs(len(detector.detect(image)) - expected) <= 1, mode


def test_sixteen_bit_grey_png_is_rescaled(tmp_path, photo):
    grey16 = (np.asarray(photo.convert("L"), np.uint16) * 257).astype(np.uint16)
    path = tmp_path / "grey16.png"
    Image.fromarray(grey16).save(path)
    image, _ = read_image(path)
    assert image.dtype == np.uint8
    # Bright pixels stay bright: a 16-bit value is scaled down, not clipped at 255.
    assert np.abs(image[..., 0].astype(int) - np.asarray(photo.convert("L"))).max() <= 1


def test_exif_orientation_is_followed(tmp_path, photo):
    """A photo stored sideways with orientation 6 (rotate 90° clockwise to view) is read as a viewer shows it."""
    sideways = photo.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    sideways.save(path, exif=exif.tobytes(), quality=95)
    image, _ = read_image(path)
    assert image.shape == (photo.height, photo.width, 3)
    assert np.abs(image.astype(int) - np.asarray(photo)).mean() < 6


def test_written_images_carry_no_metadata(tmp_path, photo):
    exif = Image.Exif()
    exif[0x010F] = "CameraMaker"
    source = tmp_path / "with_exif.jpg"
    photo.save(source, exif=exif.tobytes())
    image, _ = read_image(source)
    out = tmp_path / "out.jpg"
    write_image(image, out, "JPEG")
    with Image.open(out) as written:
        assert len(written.getexif()) == 0


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "empty file"),
        (b"hello, this is plain text and not an image\n", "not an image"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "not an image|corrupt"),
    ],
)
def test_unreadable_bytes(tmp_path, content, message):
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(ImageReadError, match=message):
        read_image(path)


@pytest.mark.parametrize("image_format", ["JPEG", "PNG"])
def test_truncated_files(tmp_path, photo, image_format):
    buffer = io.BytesIO()
    photo.save(buffer, format=image_format)
    data = buffer.getvalue()
    path = tmp_path / f"cut.{image_format.lower()}"
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(ImageReadError, match="truncated or corrupt"):
        read_image(path)


def test_missing_file_and_animation(tmp_path, photo):
    with pytest.raises(ImageReadError, match="no such file"):
        read_image(tmp_path / "nothing.jpg")
    frames = [photo, photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100)
    with pytest.raises(ImageReadError, match="2 frames"):
        read_image(path)


def test_too_many_pixels_is_refused_before_decoding(tmp_path):
    path = tmp_path / "huge.png"
    Image.new("L", (16000, 10000)).save(path)  # 160 MP, over the 150 MP limit
    with pytest.raises(ImageReadError, match="too large"):
        read_image(path)
