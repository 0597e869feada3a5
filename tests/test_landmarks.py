"""Landmark sources on the real faces of the CC0 examples, and feature-based blur driven by each of them."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from fmblur.detectors import create_detector
from fmblur.face import Face
from fmblur.landmarks import create_landmark_source, landmark_source_names
from fmblur.landmarks.dlib68 import predict_68, reduce_68_to_5
from fmblur.obfuscate import ObfuscationConfig, obfuscate

SOURCES = ("detector", "dlib68", "resnet18")
# Measured 2026-11-22 with the shipped weights on the 19 faces of the examples where RetinaFace and dlib
# agree within 0.25 inter-ocular distances: mean NME 0.086 against the teachers' mean (worst face 0.13;
# fp16 and fp32 weights give the same figure).
RESNET18_NME_BAR = 0.12


@pytest.fixture(scope="module")
def detections(examples) -> list[tuple[np.ndarray, list[Face]]]:
    detector = create_detector("retinaface")
    found = [(example.image, detector.detect(example.image)) for example in examples]
    assert sum(len(faces) for _, faces in found) >= 20
    return found


def test_every_source_is_registered():
    assert set(SOURCES) | {"none"} <= set(landmark_source_names())


@pytest.mark.parametrize("source_name", SOURCES)
def test_eyes_above_mouth_and_inside_the_box(detections, source_name):
    source = create_landmark_source(source_name)
    checked = 0
    for image, faces in detections:
        for face in source.apply(image, faces):
            assert face.landmarks is not None
            points = face.landmarks
            eye_y = (points["left_eye"][1] + points["right_eye"][1]) / 2
            mouth_y = (points["mouth_left"][1] + points["mouth_right"][1]) / 2
            assert eye_y < points["nose"][1] < mouth_y, f"{source_name}: eyes, nose, mouth out of order on {face.box}"
            assert points["left_eye"][0] < points["right_eye"][0]
            x1, y1, x2, y2 = face.box
            margin = 0.05 * max(face.width, face.height)
            for name, (x, y) in points.items():
                assert x1 - margin <= x <= x2 + margin and y1 - margin <= y <= y2 + margin, f"{name} outside the box"
            checked += 1
    assert checked >= 20


def test_resnet18_close_to_its_teachers(detections):
    """The examples' photos are left out of the landmark training (fmblur.train.landmarks): on their faces
    the shipped model stays within RESNET18_NME_BAR inter-ocular distances of its teachers' mean."""
    source = create_landmark_source("resnet18")
    errors = []
    for image, faces in detections:
        for face, predicted in zip(faces, source.apply(image, faces), strict=False):
            retina = np.array(list(face.landmarks.values()))
            dlib5 = reduce_68_to_5(predict_68(image, face.box))
            inter_ocular = np.linalg.norm(retina[0] - retina[1])
            if np.linalg.norm(retina - dlib5, axis=1).mean() > 0.25 * inter_ocular:
                continue  # the teachers disagree: no reference
            reference = (retina + dlib5) / 2
            points = np.array(list(predicted.landmarks.values()))
            errors.append(
                np.linalg.norm(points - reference, axis=1).mean() / np.linalg.norm(reference[0] - reference[1])
            )
    assert len(errors) >= 12
    assert np.mean(errors) < RESNET18_NME_BAR, errors


def sharpness(patch: np.ndarray) -> float:
    return float(cv2.Laplacian(cv2.cvtColor(patch, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var())


@pytest.mark.parametrize("source_name", SOURCES)
def test_feature_blur_keeps_eyes_sharper_with_every_source(detections, source_name):
    """Sharper at nearly every eye point, and on average. Not at every one: RetinaFace puts one eye of the
    small masked face in maksssksksss0 on the flat white mask, where a light blur stays flat while the
    uniform blur smears the dark hat into the window."""
    source = create_landmark_source(source_name)
    feature_sharpness, uniform_sharpness = [], []
    for image, faces in detections:
        faces = source.apply(image, faces)
        # The uniform blur alone: noise from the similarity check would add detail to its windows.
        uniform = obfuscate(image, faces, ObfuscationConfig(mode="gaussian", kernel=45, max_similarity=1.0))
        feature = obfuscate(image, faces, ObfuscationConfig(mode="feature", kernel=45))
        for face in faces:
            for eye in ("left_eye", "right_eye"):
                ex, ey = (int(round(v)) for v in face.landmarks[eye])
                r = max(2, int(0.08 * face.width))
                window = (slice(max(0, ey - r), ey + r + 1), slice(max(0, ex - r), ex + r + 1))
                feature_sharpness.append(sharpness(feature[window]))
                uniform_sharpness.append(sharpness(uniform[window]))
    sharper = np.greater(feature_sharpness, uniform_sharpness)
    assert len(sharper) >= 40
    assert sharper.mean() >= 0.9, f"{source_name}: sharper at only {sharper.mean():.0%} of eye windows"
    assert np.mean(feature_sharpness) > 2 * np.mean(uniform_sharpness)


def test_sources_keep_faces_in_order_and_handle_none(detections):
    image, faces = detections[0]
    for name in SOURCES:
        source = create_landmark_source(name)
        assert source.apply(image, []) == []
        out = source.apply(image, faces)
        assert [f.box for f in out] == [f.box for f in faces]
