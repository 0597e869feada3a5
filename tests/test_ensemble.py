"""Recall-first detection: the ensemble, tiling for small faces, and one box per face."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from fmblur.detectors import create_detector
from fmblur.detectors.ensemble import DEFAULT_MEMBERS, calibrate, uncalibrate
from fmblur.eval.matching import iou_matrix, match_detections


def boxes_and_scores(faces):
    return np.array([f.box for f in faces], np.float32).reshape(-1, 4), np.array([f.score for f in faces])


def test_ensemble_finds_no_fewer_faces_than_its_best_member(examples):
    ensemble = create_detector("recall-first")
    members = {name: create_detector(name) for name in DEFAULT_MEMBERS}
    totals = {name: 0 for name in [*members, "recall-first"]}
    for example in examples:
        fused = ensemble.detect(example.image)
        fused_found = int((match_detections(example.boxes, *boxes_and_scores(fused)) >= 0).sum())
        totals["recall-first"] += fused_found
        for name, member in members.items():
            found = int((match_detections(example.boxes, *boxes_and_scores(member.detect(example.image))) >= 0).sum())
            totals[name] += found
            assert fused_found >= found, f"{example.path.name}: ensemble {fused_found} < {name} {found}"
        assert len(fused) >= max(len(member.detect(example.image)) for member in members.values()) - 1
    assert totals["recall-first"] >= max(totals[name] for name in members), totals


def test_fusion_keeps_one_box_per_face(examples):
    ensemble = create_detector("recall-first", threshold=0.2)
    for example in examples:
        boxes, _ = boxes_and_scores(ensemble.detect(example.image))
        overlaps = iou_matrix(boxes, boxes)
        np.fill_diagonal(overlaps, 0)
        assert (overlaps <= 0.5).all(), f"{example.path.name}: duplicate boxes"


def test_fused_faces_carry_landmarks(example):
    faces = create_detector("recall-first").detect(example.image)
    assert faces and all(face.landmarks is not None for face in faces)
    for face in faces:
        x1, y1, x2, y2 = face.box
        eyes_y = (face.landmarks["left_eye"][1] + face.landmarks["right_eye"][1]) / 2
        assert y1 - 0.25 * face.height <= eyes_y <= y2


def test_calibration_maps_each_operating_threshold_to_one_half():
    for threshold in (0.5, 0.9):
        assert calibrate(np.array([threshold]), threshold)[0] == pytest.approx(0.5)
        assert calibrate(np.array([0.0, 1.0]), threshold).tolist() == pytest.approx([0.0, 1.0])
        for target in (0.2, 0.5, 0.8):
            assert calibrate(np.array([uncalibrate(target, threshold)]), threshold)[0] == pytest.approx(target)


@pytest.fixture(scope="module")
def small_face_frame(examples):
    """A real face cut from an example, pasted at 16 px into a 1920x1080 frame made from another photo."""
    face_source = next(e for e in examples if e.path.stem == "maksssksksss83")
    x1, y1, x2, y2 = face_source.boxes[np.argmax((face_source.boxes[:, 2] - face_source.boxes[:, 0]))].astype(int)
    pad = int(0.15 * (x2 - x1))
    face = face_source.image[max(0, y1 - pad) : y2 + pad, max(0, x1 - pad) : x2 + pad]
    background = next(e for e in examples if e.path.stem == "maksssksksss182").image
    frame = cv2.resize(background, (1920, 1080), interpolation=cv2.INTER_LINEAR)
    # Blur the background so its own (now huge) faces do not matter here, then paste the tiny face.
    frame = cv2.GaussianBlur(frame, (0, 0), 25)
    scale = 16 / (x2 - x1)
    small = cv2.resize(face, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    top, left = 700, 1500
    frame[top : top + small.shape[0], left : left + small.shape[1]] = small
    inner = np.array(
        [
            [
                left + pad * scale,
                top + pad * scale,
                left + pad * scale + 16,
                top + pad * scale + 16 * (y2 - y1) / (x2 - x1),
            ]
        ]
    )
    return frame, inner


def test_tiling_finds_a_16_pixel_face_in_a_1080p_frame(small_face_frame):
    frame, truth = small_face_frame
    single = create_detector("retinaface", upscale_to=0)
    tiled = create_detector("retinaface", upscale_to=800, tile=480)
    assert (match_detections(truth, *boxes_and_scores(single.detect(frame)), iou=0.3) < 0).all(), (
        "precondition: a single pass at the frame's resolution misses it"
    )
    assert (match_detections(truth, *boxes_and_scores(tiled.detect(frame)), iou=0.3) >= 0).all()


def test_flip_merges_into_one_box_per_face_with_mirrored_landmarks(example):
    plain = create_detector("retinaface").detect(example.image)
    flipped = create_detector("retinaface", flip=True).detect(example.image)
    boxes, _ = boxes_and_scores(flipped)
    overlaps = iou_matrix(boxes, boxes)
    np.fill_diagonal(overlaps, 0)
    assert (overlaps <= 0.5).all()
    assert len(flipped) >= len(plain)
    for face in flipped:
        # After mirroring back, the left eye is still the one on the image's left.
        assert face.landmarks["left_eye"][0] < face.landmarks["right_eye"][0] + 0.1 * face.width
