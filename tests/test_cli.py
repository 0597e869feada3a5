"""`fmblur image` end to end on real photos: outputs, JSON, errors, and nothing overwritten."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from fmblur.cli import main
from fmblur.geometry import match_detections
from fmblur.image_io import read_image
from tests.conftest import REPO


def changed_share(before: np.ndarray, after: np.ndarray, box) -> float:
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    return float(np.any(before[y1:y2, x1:x2] != after[y1:y2, x1:x2], axis=2).mean())


@pytest.fixture
def photo_folder(tmp_path, examples):
    folder = tmp_path / "photos"
    (folder / "day2").mkdir(parents=True)
    for example in examples[:3]:
        shutil.copy(example.path, folder / example.path.name)
    shutil.copy(examples[3].path, folder / "day2" / examples[3].path.name)
    Image.open(examples[4].path).save(folder / "as_png.png")
    (folder / "broken.jpg").write_bytes(examples[0].path.read_bytes()[:2000])
    (folder / "notes.txt").write_text("not an image, and not picked up by the folder scan")
    return folder


def test_folder_with_a_corrupt_file(tmp_path, photo_folder, examples, capsys):
    out = tmp_path / "out"
    before = {p: p.read_bytes() for p in photo_folder.rglob("*") if p.is_file()}
    code = main(["image", str(photo_folder), "-o", str(out), "--json"])
    stderr = capsys.readouterr().err
    assert code == 1, "a failed file makes the exit code non-zero"
    error_lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and "broken.jpg" in error_lines[0] and "truncated or corrupt" in error_lines[0]
    assert {p: p.read_bytes() for p in photo_folder.rglob("*") if p.is_file()} == before, "inputs untouched"

    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    stems = [e.path.stem for e in examples[:3]]
    expected = {f"{s}.jpg" for s in stems} | {f"{s}.json" for s in stems}
    expected |= {f"day2/{examples[3].path.stem}.jpg", f"day2/{examples[3].path.stem}.json", "as_png.png", "as_png.json"}
    assert set(written) == expected

    with Image.open(out / "as_png.png") as png:
        assert png.format == "PNG"
    for example in examples[:3]:
        with Image.open(out / f"{example.path.stem}.jpg") as jpeg:
            assert jpeg.format == "JPEG"
        result, _ = read_image(out / f"{example.path.stem}.jpg")
        for box in example.boxes:
            assert changed_share(example.image, result, box) > 0.8
        record = json.loads((out / f"{example.path.stem}.json").read_text())
        assert set(record) == {"faces", "timings_ms", "runtime", "privacy"}
        assert set(record["timings_ms"]) >= {"detect", "landmarks", "obfuscate", "privacy", "total"}
        assert len(record["privacy"]["faces"]) == len(record["faces"])
        assert record["privacy"]["reidentifiable"] == 0  # the default blur
        assert len(record["faces"]) >= len(example.boxes) - 1
        for face in record["faces"]:
            assert set(face) == {"box", "score", "landmarks"}
            assert len(face["box"]) == 4 and 0.0 <= face["score"] <= 1.0
            assert set(face["landmarks"]) == {"left_eye", "right_eye", "nose", "mouth_left", "mouth_right"}


def test_never_overwrites(tmp_path, examples, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    source = shutil.copy(examples[0].path, folder / "a.jpg")
    original = source.read_bytes()

    # Writing into the input folder would replace the input itself: refused, input intact.
    assert main(["image", str(source), "-o", str(folder)]) == 1
    assert "would overwrite an input" in capsys.readouterr().err
    assert source.read_bytes() == original

    out = tmp_path / "out"
    assert main(["image", str(source), "-o", str(out)]) == 0
    first = (out / "a.jpg").read_bytes()
    # A second run does not silently replace the first run's result...
    assert main(["image", str(source), "-o", str(out), "--mode", "solid"]) == 1
    assert "exists" in capsys.readouterr().err
    assert (out / "a.jpg").read_bytes() == first
    # ...unless asked to.
    assert main(["image", str(source), "-o", str(out), "--mode", "solid", "--overwrite"]) == 0
    assert (out / "a.jpg").read_bytes() != first


def test_same_stem_twice_is_refused_for_the_second(tmp_path, examples, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(examples[0].path, folder / "same.jpg")
    Image.open(examples[1].path).save(folder / "same.png")
    out = tmp_path / "out"
    code = main(["image", str(folder), "-o", str(out), "--json"])
    assert code == 1
    assert "would also be written" in capsys.readouterr().err
    assert (out / "same.jpg").exists() and (out / "same.json").exists() and not (out / "same.png").exists()


def test_options_reach_the_pipeline(tmp_path, example, capsys):
    out = tmp_path / "out"
    code = main(
        [
            "image",
            str(example.path),
            "-o",
            str(out),
            "--detector",
            "centerface",
            "--mode",
            "solid",
            "--fill",
            "255,0,0",
            "--shape",
            "box",
            "--mask-scale",
            "1.0",
            "--thresh",
            "0.4",
            "--json",
        ]
    )
    assert code == 0
    result, _ = read_image(out / example.path.with_suffix(".jpg").name)
    record = json.loads((out / f"{example.path.stem}.json").read_text())
    assert all(face["score"] >= 0.4 for face in record["faces"])
    x1, y1, x2, y2 = (int(round(v)) for v in record["faces"][0]["box"])
    centre = result[(y1 + y2) // 2, (x1 + x2) // 2].astype(int)
    assert centre[0] > 200 and centre[1] < 60 and centre[2] < 60, "solid red fill inside the face"


def test_ensemble_members_from_the_command_line(tmp_path, example, capsys):
    """Two members chosen on the command line find the example's faces; --members needs --detector ensemble."""
    out = tmp_path / "out"
    args = ["image", str(example.path), "-o", str(out), "--json", "--no-privacy"]
    assert main([*args, "--detector", "ensemble", "--members", "centerface", "retinaface=0.6"]) == 0
    record = json.loads((out / f"{example.path.stem}.json").read_text())
    boxes = np.array([face["box"] for face in record["faces"]]).reshape(-1, 4)
    scores = np.array([face["score"] for face in record["faces"]])
    assert (match_detections(example.boxes, boxes, scores) >= 0).all(), "every face of the example found"
    assert main([*args[:3], str(tmp_path / "o2"), "--members", "centerface", "retinaface"]) == 2
    assert "--members is for --detector ensemble" in capsys.readouterr().err
    assert main([*args[:3], str(tmp_path / "o3"), "--detector", "ensemble", "--members", "centerface:sideways"]) == 2


def test_bad_option_values_are_usage_errors(tmp_path, example, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["image", str(example.path), "-o", str(tmp_path), "--kernel", "4"])
    assert exit_info.value.code == 2
    assert "odd number from 5 to 65" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["image", str(example.path), "-o", str(tmp_path), "--detector", "nope"])
    assert main(["image", str(example.path), "-o", str(tmp_path / "o"), "--mask-scale", "9"]) == 2


def test_huge_photo_is_anonymised_at_full_size(tmp_path, example):
    """A 12000x9000 photo: detection runs on a downscaled copy, the blur on the full-size pixels."""
    import cv2

    big = cv2.resize(example.image, (12000, 9000), interpolation=cv2.INTER_LINEAR)
    path = tmp_path / "huge.jpg"
    Image.fromarray(big).save(path, quality=90)
    out = tmp_path / "out"
    assert main(["image", str(path), "-o", str(out), "--json", "-q"]) == 0
    result, _ = read_image(out / "huge.jpg")
    assert result.shape == big.shape
    record = json.loads((out / "huge.json").read_text())
    assert len(record["faces"]) >= len(example.boxes)
    scale = 12000 / example.image.shape[1]
    for box in example.boxes:
        assert changed_share(big, result, box * scale) > 0.8


def test_module_entry_point(tmp_path, example):
    out = tmp_path / "out"
    completed = subprocess.run(
        [sys.executable, "-m", "fmblur", "image", str(example.path), "-o", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr
    assert "1 image(s) written" in completed.stderr and (out / example.path.name).exists()
