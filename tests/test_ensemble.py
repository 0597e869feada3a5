"""Recall-first detection: the ensemble, tiling for small faces, and one box per face."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from fmblur.detectors import create_detector
from fmblur.detectors.calibration import Calibration, PrecisionMap, load_calibration
from fmblur.detectors.ensemble import DEFAULT_MEMBERS, MEMBER_FLOOR, MemberDetections, MemberSpec, calibrate, fuse
from fmblur.geometry import iou_matrix, match_detections


def boxes_and_scores(faces):
    return np.array([f.box for f in faces], np.float32).reshape(-1, 4), np.array([f.score for f in faces])


def test_ensemble_finds_no_fewer_faces_than_its_best_member(examples):
    ensemble = create_detector("recall-first")
    member_names = sorted({MemberSpec.parse(spec).name for spec in DEFAULT_MEMBERS})
    members = {name: create_detector(name) for name in member_names}
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


@pytest.mark.skipif(not create_detector("frcnn_mobilenet_v3").available(), reason="no trained MobileNetV3 weights")
def test_a_trained_variant_joins_an_ensemble(examples):
    """A project-trained Faster R-CNN as a member: no face either member finds is lost, and the faces keep the
    landmarks of the member that has them (Faster R-CNN has none)."""
    ensemble = create_detector("ensemble", members=("centerface", "frcnn_mobilenet_v3=0.5"))
    members = [create_detector("centerface"), create_detector("frcnn_mobilenet_v3")]
    for example in examples:
        fused = ensemble.detect(example.image)
        fused_hits = match_detections(example.boxes, *boxes_and_scores(fused)) >= 0
        for member in members:
            member_hits = match_detections(example.boxes, *boxes_and_scores(member.detect(example.image))) >= 0
            assert fused_hits.sum() >= member_hits.sum(), f"{example.path.name}: {member.name}"
        assert any(face.landmarks for face in fused)


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
        _x1, y1, _x2, y2 = face.box
        eyes_y = (face.landmarks["left_eye"][1] + face.landmarks["right_eye"][1]) / 2
        assert y1 - 0.25 * face.height <= eyes_y <= y2


def test_fallback_calibration_maps_each_operating_threshold_to_one_half():
    for threshold in (0.5, 0.9):
        assert calibrate(np.array([threshold]), threshold)[0] == pytest.approx(0.5)
        assert calibrate(np.array([0.0, 1.0]), threshold).tolist() == pytest.approx([0.0, 1.0])


def test_precision_map_from_real_candidates_is_monotone_and_round_trips(examples):
    """CenterFace's candidates on the examples: higher scores are more often faces, and the map says so."""
    detector = create_detector("centerface", threshold=MEMBER_FLOOR)
    scores, is_face = [], []
    for example in examples:
        raw = detector.detect_raw(example.image)
        matched = match_detections(example.boxes, raw.boxes, raw.scores)
        hits = np.zeros(len(raw.scores), bool)
        hits[matched[matched >= 0]] = True
        scores.append(raw.scores)
        is_face.append(hits)
    scores, is_face = np.concatenate(scores), np.concatenate(is_face)
    precision_map = PrecisionMap.fit(scores, is_face, bins=5)
    assert np.all(np.diff(precision_map(np.linspace(0, 1, 50))) >= 0)
    # The top fifth of candidates are nearly all faces, the bottom fifth mostly not.
    assert precision_map(np.array([scores.max()]))[0] >= 0.9
    assert precision_map(np.array([scores.min()]))[0] < 0.5
    calibration = Calibration(maps={"centerface": precision_map}, operating_threshold=0.6, fitted_on="examples")
    restored = Calibration.from_json(calibration.to_json())
    assert restored.operating_threshold == 0.6
    probe = np.linspace(0, 1, 11)
    assert restored.maps["centerface"](probe) == pytest.approx(precision_map(probe), abs=1e-4)
    with pytest.raises(ValueError, match="non-decreasing"):
        PrecisionMap((0.1, 0.5), (0.9, 0.2))


def test_committed_calibration_covers_the_default_members():
    calibration = load_calibration()
    assert {MemberSpec.parse(spec).key for spec in DEFAULT_MEMBERS} <= set(calibration.maps)
    assert 0.0 < calibration.operating_threshold < 1.0
    for precision_map in calibration.maps.values():
        assert np.all(np.diff(precision_map(np.linspace(0, 1, 101))) >= 0)


def test_noisy_or_fusion_rewards_agreement_and_keeps_a_lone_face(example):
    """Two members on the same real face give a higher score than either; a face one member sees survives."""
    face, other = example.boxes[0].astype(np.float64), example.boxes[1].astype(np.float64)
    no_points = np.full((1, 5, 2), np.nan)
    first = MemberDetections(np.array([face, other]), np.array([0.6, 0.7]), np.full((2, 5, 2), np.nan))
    second = MemberDetections(np.array([face + 1.0]), np.array([0.5]), no_points)
    fused = fuse([first, second], weights=[1.0, 0.8])
    assert len(fused.scores) == 2
    by_box = {int(np.argmax(iou_matrix(fused.boxes[i : i + 1], np.array([face, other]))[0])): i for i in range(2)}
    assert fused.scores[by_box[0]] == pytest.approx(1 - (1 - 0.6) * (1 - 0.8 * 0.5))
    assert fused.scores[by_box[1]] == pytest.approx(0.7)
    assert iou_matrix(fused.boxes[by_box[0] : by_box[0] + 1], face[None])[0, 0] > 0.9


def test_member_specs_parse_and_refuse_nonsense():
    assert MemberSpec.parse("centerface:mirror=0.8") == MemberSpec("centerface", mirror=True, weight=0.8)
    assert MemberSpec.parse("mtcnn").key == "mtcnn"
    for bad in ("centerface:upside-down", "retinaface=2", "retinaface=x", "no-such-detector"):
        with pytest.raises(ValueError):
            MemberSpec.parse(bad)
    with pytest.raises(ValueError, match="differ"):
        create_detector("ensemble", members=("centerface", "centerface=0.5"))


@pytest.fixture(scope="module")
def small_face_frame(examples):
    """A real face cut from an example, pasted at 16 px into a 1920x1080 frame made from another photo."""
    face_source = next(e for e in examples if e.path.stem == "maksssksksss83")
    x1, y1, x2, y2 = face_source.boxes[np.argmax(face_source.boxes[:, 2] - face_source.boxes[:, 0])].astype(int)
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
