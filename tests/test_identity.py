"""Face identity on real photos: matching, the privacy meter, and keeping or hiding chosen people."""

from __future__ import annotations

import json
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from fmblur.cli import main
from fmblur.detectors import create_detector
from fmblur.face import Face
from fmblur.identity import create_embedder
from fmblur.identity.privacy import measure_privacy
from fmblur.identity.selection import ReferenceError, build_selection
from fmblur.image_io import read_image
from fmblur.obfuscate import ObfuscationConfig, coverage_mask, obfuscate
from tests.conftest import REPO

SELFIE = REPO / "tests" / "data" / "selfie_2s_audio.mp4"


@pytest.fixture(scope="module")
def detector():
    return create_detector("retinaface")


@pytest.fixture(scope="module")
def found(examples, detector) -> list[tuple[Path, np.ndarray, list[Face]]]:
    return [(example.path, example.image, detector.detect(example.image)) for example in examples]


def save_reference(image: np.ndarray, face: Face, path: Path) -> Path:
    """A reference photo of one person: the face with half a face of margin, re-encoded as JPEG at 90 %."""
    x1, y1, x2, y2 = (int(v) for v in face.box)
    margin = (x2 - x1) // 2
    crop = image[max(0, y1 - margin) : y2 + margin, max(0, x1 - margin) : x2 + margin]
    cv2.imwrite(str(path), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    return path


@pytest.fixture(scope="module")
def reference(examples, detector, tmp_path_factory) -> tuple[Path, Face]:
    """The largest face of maksssksksss83 (an unmasked man) as a reference photo."""
    example = next(e for e in examples if e.path.stem == "maksssksksss83")
    face = max(detector.detect(example.image), key=lambda f: f.width)
    return save_reference(example.image, face, tmp_path_factory.mktemp("reference") / "reference.jpg"), face


def test_a_face_matches_itself_and_no_other_face_of_the_examples(found, reference, detector):
    path, reference_face = reference
    selection = build_selection("keep", [path], detector)
    matches = []
    for photo, image, faces in found:
        for face, decision in zip(faces, selection.decide(image, faces), strict=False):
            if not decision.hide:
                matches.append((photo.stem, face.box))
    assert matches == [("maksssksksss83", reference_face.box)]
    assert selection.decide_embedding(selection.references[0]).hide is False


def test_no_face_is_reidentifiable_after_a_45_kernel_blur(found):
    embedder = create_embedder("dlib")
    measured = 0
    for _, image, faces in found:
        blurred = obfuscate(image, faces, ObfuscationConfig(mode="gaussian", kernel=45))
        report = measure_privacy(image, blurred, faces, embedder)
        assert report.reidentifiable == 0, report.summary
        measured += report.measured
    assert measured >= 15


def test_a_light_blur_leaves_faces_reidentifiable(found):
    """The meter can say yes: a 5-pixel kernel hides nothing from a face recogniser (the blur alone: without
    the similarity check, which would give these faces noise)."""
    embedder = create_embedder("dlib")
    light_blur = ObfuscationConfig(mode="gaussian", kernel=5, max_similarity=1.0)
    reidentifiable = measured = 0
    for _, image, faces in found:
        report = measure_privacy(image, obfuscate(image, faces, light_blur), faces, embedder)
        reidentifiable += report.reidentifiable
        measured += report.measured
    assert reidentifiable >= 0.9 * measured


def face_changed(before: np.ndarray, after: np.ndarray, face: Face) -> float:
    x1, y1, x2, y2 = (int(round(v)) for v in face.box)
    return float(np.any(before[y1:y2, x1:x2] != after[y1:y2, x1:x2], axis=2).mean())


@pytest.mark.parametrize("mode", ["keep", "only"])
def test_keep_and_only_on_a_photo(tmp_path, examples, detector, reference, mode, capsys):
    path, reference_face = reference
    example = next(e for e in examples if e.path.stem == "maksssksksss83")
    photo = tmp_path / "group.png"  # lossless, so untouched pixels compare equal after the CLI writes them
    cv2.imwrite(str(photo), cv2.cvtColor(example.image, cv2.COLOR_RGB2BGR))
    out = tmp_path / "out"
    code = main(["image", str(photo), "-o", str(out), "--detector", "retinaface", f"--{mode}", str(path), "--json"])
    assert code == 0, capsys.readouterr().err
    result = read_image(out / "group.png")[0]
    faces = detector.detect(example.image)
    assert len(faces) >= 4
    visible = [face for face in faces if (mode == "keep") == (face.box == reference_face.box)]
    hidden = [face for face in faces if face not in visible]
    # A hidden neighbour's region may overlap a visible face's box (hiding wins); nothing else may change there.
    changed = np.any(result != example.image, axis=2)
    covered = coverage_mask(example.image.shape[:2], hidden, ObfuscationConfig())
    for face in visible:
        x1, y1, x2, y2 = (int(round(v)) for v in face.box)
        box = (slice(y1, y2), slice(x1, x2))
        assert not (changed[box] & ~covered[box]).any(), f"{mode}: a face that should stay visible changed"
        assert (~changed[box]).mean() > 0.6, f"{mode}: a visible face is mostly covered by a neighbour's region"
    for face in hidden:
        assert face_changed(example.image, result, face) > 0.8, f"{mode}: a face that should be hidden is not"
    record = json.loads((out / "group.json").read_text())
    assert len(record["kept_faces"]) == (1 if mode == "keep" else len(faces) - 1)
    assert record["privacy"]["reidentifiable"] == 0


def test_a_reference_photo_without_a_face_is_refused(tmp_path, examples, detector, capsys):
    blank = tmp_path / "wall.png"
    cv2.imwrite(str(blank), np.full((200, 200, 3), 180, np.uint8))
    with pytest.raises(ReferenceError, match=r"wall\.png: no face found"):
        build_selection("keep", [blank], detector)
    code = main(["image", str(examples[0].path), "-o", str(tmp_path / "out"), "--keep", str(blank)])
    assert code == 2
    assert "no face found in the reference photo" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def decoded(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24").astype(np.int16) for frame in container.decode(video=0)]


def test_video_decides_once_per_track(tmp_path, detector):
    """The selfie clip's one person, kept: untouched in every frame; hidden with --only: hidden in every frame."""
    frames = decoded(SELFIE)
    middle = frames[len(frames) // 2].astype(np.uint8)
    face = max(detector.detect(middle), key=lambda f: f.width)
    path = save_reference(middle, face, tmp_path / "selfie_reference.jpg")
    x1, y1, x2, y2 = (int(v) for v in face.box)
    region = (slice(y1 + 10, y2 - 10), slice(x1 + 10, x2 - 10))
    for mode in ("keep", "only"):
        out = tmp_path / mode
        assert (
            main(["video", str(SELFIE), "-o", str(out), "--detector", "retinaface", f"--{mode}", str(path), "-q"]) == 0
        )
        result = decoded(out / "selfie_2s_audio.mp4")
        assert len(result) == len(frames)
        # H.264 re-encoding moves pixels by a few grey levels; a blur moves the face by tens.
        difference = [float(np.abs(a[region] - b[region]).mean()) for a, b in zip(frames, result, strict=False)]
        if mode == "keep":
            assert max(difference) < 4, difference
        else:
            assert min(difference) > 8, difference


def test_uncertainty_never_unhides_a_face(examples, reference, detector):
    """The reference person is hidden all the same when too small to recognise or without landmarks."""
    path, reference_face = reference
    example = next(e for e in examples if e.path.stem == "maksssksksss83")
    keep = build_selection("keep", [path], detector)
    assert not keep.decide(example.image, [reference_face])[0].hide
    assert keep.decide(example.image, [reference_face.with_landmarks(None)])[0].hide
    small = cv2.resize(example.image, None, fx=0.25, fy=0.25, interpolation=cv2.INTER_AREA)
    tiny_face = max(detector.detect(small), key=lambda f: f.width)
    assert tiny_face.width < keep.embedder.min_face
    decision = keep.decide(small, [tiny_face])[0]
    assert decision.hide and decision.reason.startswith("unsure")
    only = build_selection("only", [path], detector)
    assert only.decide(small, [tiny_face])[0].hide
