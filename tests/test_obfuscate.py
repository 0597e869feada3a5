"""Obfuscation changes the faces, and only the faces, on real photos."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest

from fmblur.detectors import create_detector
from fmblur.face import Face
from fmblur.geometry import iou_matrix
from fmblur.obfuscate import (
    DEFAULT_MAX_SIMILARITY,
    KERNEL_RANGE,
    ObfuscationConfig,
    coverage_mask,
    obfuscate,
    region_box,
)


@pytest.fixture(scope="module")
def detected(example):
    faces = create_detector("retinaface").detect(example.image)
    assert len(faces) >= 4
    return faces


def face_pixels(image: np.ndarray, face: Face) -> np.ndarray:
    x1, y1, x2, y2 = (int(round(v)) for v in face.box)
    return image[y1:y2, x1:x2]


def sharpness(patch: np.ndarray) -> float:
    """Variance of the Laplacian: high for detail, near zero for blur."""
    return float(cv2.Laplacian(cv2.cvtColor(patch, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var())


CONFIGS = [
    ObfuscationConfig(mode="gaussian", kernel=45, shape="box"),
    ObfuscationConfig(mode="gaussian", shape="ellipse"),
    ObfuscationConfig(mode="feature", kernel=45),
    ObfuscationConfig(mode="mosaic", shape="box"),
    ObfuscationConfig(mode="solid", shape="ellipse", fill_color=(255, 0, 0)),
    ObfuscationConfig(mode="gaussian", kernel=25, feather=0.2),
    ObfuscationConfig(mode="gaussian", grain=12),
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.mode}-{c.shape}-feather{c.feather}")
def test_faces_change_and_the_rest_does_not(example, detected, config):
    original = example.image.copy()
    output = obfuscate(example.image, detected, config)
    assert np.array_equal(example.image, original), "the input must not be modified"
    changed = np.any(output != example.image, axis=2)
    covered = coverage_mask(example.image.shape[:2], detected, config)
    assert not changed[~covered].any(), "pixels outside every face region changed"
    for face in detected:
        before, after = face_pixels(example.image, face), face_pixels(output, face)
        differs = np.any(before != after, axis=2).mean()
        assert differs > 0.8, f"only {differs:.0%} of a face's pixels changed"
        assert np.abs(before.astype(int) - after.astype(int)).mean() > 5


def test_larger_kernel_removes_more_detail(example, detected):
    sharpness_by_kernel = []
    for kernel in range(KERNEL_RANGE[0], KERNEL_RANGE[1] + 1, 10):
        # A box region covers the whole face box, so no sharp region edge enters the measurement.
        config = ObfuscationConfig(mode="gaussian", kernel=kernel, shape="box", max_similarity=1.0)  # the blur alone
        output = obfuscate(example.image, detected, config)
        sharpness_by_kernel.append(np.mean([sharpness(face_pixels(output, f)) for f in detected]))
    assert all(a > b for a, b in itertools.pairwise(sharpness_by_kernel)), sharpness_by_kernel
    original = np.mean([sharpness(face_pixels(example.image, f)) for f in detected])
    assert sharpness_by_kernel[0] < original


def test_feature_blur_keeps_eyes_sharper_than_uniform_blur(example, detected):
    uniform = obfuscate(example.image, detected, ObfuscationConfig(mode="gaussian", kernel=45))
    feature = obfuscate(example.image, detected, ObfuscationConfig(mode="feature", kernel=45))
    for face in detected:
        ex, ey = (int(round(v)) for v in face.landmarks["left_eye"])
        r = max(2, int(0.1 * face.width))
        window = (slice(ey - r, ey + r + 1), slice(ex - r, ex + r + 1))
        assert sharpness(feature[window]) > sharpness(uniform[window])


def test_feature_blur_without_landmarks_falls_back_to_uniform(example, detected):
    bare = [face.with_landmarks(None) for face in detected]
    feature = obfuscate(example.image, bare, ObfuscationConfig(mode="feature", kernel=45))
    uniform = obfuscate(example.image, bare, ObfuscationConfig(mode="gaussian", kernel=45))
    assert np.array_equal(feature, uniform)


def test_relative_kernel_grows_with_face_size():
    config = ObfuscationConfig(kernel_relative=0.5)
    tiny, small, large = Face((0, 0, 8, 8), 1.0), Face((0, 0, 20, 20), 1.0), Face((0, 0, 400, 300), 1.0)
    assert config.kernel_for(tiny) == KERNEL_RANGE[0]
    assert config.kernel_for(small) == 11
    assert config.kernel_for(large) == 201


def test_huge_relative_kernel_blurs_a_large_face(example):
    """A face filling a 4x enlarged photo gets a kernel far above 65, applied as a true Gaussian of that size."""
    big = cv2.resize(example.image, None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC)
    height, width = big.shape[:2]
    face = Face((width * 0.2, height * 0.2, width * 0.8, height * 0.8), 1.0)
    config = ObfuscationConfig(kernel_relative=0.5, shape="box", mask_scale=1.0)
    kernel = config.kernel_for(face)
    assert kernel > 400
    output = obfuscate(big, [face], config)
    exact = cv2.GaussianBlur(big, (kernel, kernel), 0, borderType=cv2.BORDER_REFLECT)
    difference = np.abs(face_pixels(output, face).astype(int) - face_pixels(exact, face))
    assert difference.mean() < 1.0 and difference.max() <= 3
    at_65 = obfuscate(big, [face], ObfuscationConfig(kernel=65, shape="box", mask_scale=1.0))
    assert sharpness(face_pixels(output, face)) < sharpness(face_pixels(at_65, face))


def test_every_face_of_a_crowd_gets_its_own_exact_gaussian(examples):
    """Many faces of one frame share shrunk copies of it for their large kernels: each face's region still
    matches an exact Gaussian of its own kernel over the whole frame, faces at the border included."""
    crowd = max(examples, key=lambda e: len(e.boxes))
    big = cv2.resize(crowd.image, None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC)
    height, width = big.shape[:2]
    corners = [
        Face((-60.0, -50.0, 90.0, 110.0), 1.0),
        Face((width - 70.0, height - 90.0, width + 50.0, height + 40.0), 1.0),
    ]
    faces = [Face(tuple(3.0 * box), 1.0) for box in crowd.boxes] + corners
    config = ObfuscationConfig(shape="box", mask_scale=1.0, max_similarity=1.0)  # the blur alone: no noise
    kernels = {config.kernel_for(face) for face in faces}
    assert len(kernels) >= 6 and min(kernels) > 65, "faces of several sizes, all with large kernels"
    output = obfuscate(big, faces, config)
    checked = 0
    for face in faces:
        others = [other.box for other in faces if other is not face]
        if (iou_matrix(np.array([face.box]), np.array(others)) > 0).any():
            continue  # pasted over by, or over, a neighbour
        kernel = config.kernel_for(face)
        exact = cv2.GaussianBlur(big, (kernel, kernel), 0, borderType=cv2.BORDER_REFLECT)
        left, top, right, bottom = region_box(face, 1.0, big.shape[1], big.shape[0])
        difference = np.abs(output[top:bottom, left:right].astype(int) - exact[top:bottom, left:right])
        assert difference.mean() < 1.0 and difference.max() <= 4, (face.box, kernel)
        checked += 1
    assert checked >= 5


def test_overlapping_faces_and_faces_cut_by_the_border(example):
    height, width = example.image.shape[:2]
    faces = [
        Face((-30.0, -20.0, 60.0, 70.0), 0.9),  # beyond the top-left corner
        Face((40.0, 40.0, 140.0, 150.0), 0.9),  # overlaps the first
        Face((width - 50.0, height - 40.0, width + 30.0, height + 30.0), 0.9),  # beyond bottom-right
    ]
    for mode in ("gaussian", "mosaic", "solid", "feature"):
        config = ObfuscationConfig(mode=mode, shape="box", mask_scale=1.0)
        output = obfuscate(example.image, faces, config)
        for face in faces:
            left, top, right, bottom = region_box(face, 1.0, width, height)
            region_changed = np.any(output[top:bottom, left:right] != example.image[top:bottom, left:right], axis=2)
            assert region_changed.mean() > 0.8, mode


def test_solid_fill_colour_and_empty_face_list(example, detected):
    output = obfuscate(
        example.image, detected, ObfuscationConfig(mode="solid", fill_color=(10, 20, 30), shape="box", mask_scale=1.0)
    )
    face = detected[0]
    assert (face_pixels(output, face).reshape(-1, 3) == (10, 20, 30)).all()
    assert np.array_equal(obfuscate(example.image, [], ObfuscationConfig()), example.image)


@pytest.mark.parametrize(
    "options",
    [
        {"kernel": 4},
        {"kernel": 67},
        {"mode": "swirl"},
        {"shape": "star"},
        {"mask_scale": 0.5},
        {"feature_kernel": 2},
        {"grain": -1},
        {"max_similarity": 0.0},
    ],
)
def test_bad_settings_are_rejected(options):
    with pytest.raises(ValueError):
        ObfuscationConfig(**options)


def test_default_blur_hides_faces_from_the_detector(example, detected):
    """With the defaults (and solid fill), RetinaFace no longer finds the annotated faces in the output.

    The feature mode is meant to stay detectable, and a fixed small kernel may too: those are not tested here.
    """
    from fmblur.geometry import match_detections

    detector = create_detector("retinaface")
    for config in (ObfuscationConfig(), ObfuscationConfig(mode="solid")):
        output = obfuscate(example.image, detected, config)
        again = detector.detect(output)
        boxes = np.array([f.box for f in again], np.float32).reshape(-1, 4)
        matched = match_detections(example.boxes, boxes, np.array([f.score for f in again]), iou=0.3)
        assert (matched < 0).all(), f"{config.mode}: a hidden face is still detected"


def test_the_ellipse_hides_each_detected_box_whole_corners_included(example):
    """A tight detector box's corners (forehead, chin) lie outside an ellipse grown 1.3x; they are hidden too."""
    faces = create_detector("retinaface").detect(example.image)
    assert len(faces) >= len(example.boxes)
    config = ObfuscationConfig(shape="ellipse")
    covered = coverage_mask(example.image.shape[:2], faces, config)
    output = obfuscate(example.image, faces, config)
    for face in faces:
        x1, y1, x2, y2 = (int(round(v)) for v in face.box)
        assert covered[y1:y2, x1:x2].all()
        corner = (slice(y1, y1 + 3), slice(x1, x1 + 3))
        assert (output[corner] != example.image[corner]).any()


def _soft_faces(examples):
    """Faces of the example photos enlarged 5x (as a zooming camera shows small faces): smooth at pixel scale.
    Yields (image, face) per face."""
    for example in examples:
        for x1, y1, x2, y2 in example.boxes.astype(int):
            margin = x2 - x1
            crop = example.image[max(0, y1 - margin) : y2 + margin, max(0, x1 - margin) : x2 + margin]
            soft = cv2.resize(crop, None, fx=5, fy=5, interpolation=cv2.INTER_LINEAR)
            left, top = 5 * (x1 - max(0, x1 - margin)), 5 * (y1 - max(0, y1 - margin))
            yield soft, Face(box=(left, top, left + 5 * (x2 - x1), top + 5 * (y2 - y1)), score=1.0)


def _box_similarity(before: np.ndarray, after: np.ndarray, face: Face) -> float:
    from skimage.metrics import structural_similarity

    return structural_similarity(
        *(cv2.cvtColor(face_pixels(image, face), cv2.COLOR_RGB2GRAY) for image in (before, after))
    )


def test_grain_is_fresh_each_time_and_keeps_soft_faces_from_matching_their_originals(examples):
    """Blurred alone, SSIM still rates many soft face boxes as like their originals (0.6 or more). Noise over
    the blur is new on every call (nothing to subtract) and brings every box under 0.6."""
    plain_similar = 0
    blur_alone = ObfuscationConfig(max_similarity=1.0)
    for soft, face in _soft_faces(examples):
        plain_similar += _box_similarity(soft, obfuscate(soft, [face], blur_alone), face) >= 0.6
        grainy = [obfuscate(soft, [face], ObfuscationConfig(grain=12, max_similarity=1.0)) for _ in range(2)]
        assert not np.array_equal(*grainy)
        assert all(_box_similarity(soft, output, face) < 0.6 for output in grainy)
    assert plain_similar >= 10, "precondition: blurred soft faces that SSIM rates as like their originals"


@pytest.mark.parametrize("mode", ["gaussian", "mosaic"])
def test_with_the_similarity_check_a_hidden_face_box_is_never_like_its_original(examples, mode):
    """The check (on by default) compares each blurred (or mosaic) face box with the original by the leak bench's
    measure and adds noise where the blur alone left it similar: every soft face box ends under SSIM 0.6."""
    checked = ObfuscationConfig(mode=mode)
    assert checked.max_similarity == DEFAULT_MAX_SIMILARITY < 0.6
    for soft, face in _soft_faces(examples):
        assert _box_similarity(soft, obfuscate(soft, [face], checked), face) < 0.6


@pytest.mark.parametrize("mode", ["gaussian", "mosaic"])
def test_the_checks_noise_gives_no_soft_face_back_to_a_strong_detector(examples, mode):
    """Noise added for the check must not make a hidden face findable: a stronger RetinaFace (0.3, on a 1.5x copy)
    finds none of the soft faces hidden with the check. Per-pixel noise gave one back in most runs (up to 0.46)."""
    strong = create_detector("retinaface", threshold=0.3, scale=1.5)
    found = 0
    for soft, face in _soft_faces(examples):
        hidden = obfuscate(soft, [face], ObfuscationConfig(mode=mode))
        found += any(iou_matrix(np.array([face.box]), np.array([f.box]))[0, 0] >= 0.3 for f in strong.detect(hidden))
    assert found == 0


def test_sharp_faces_the_blur_hides_get_no_noise_from_the_check(examples):
    """Noise goes only where the blur alone left a face like its original: most faces of the example photos
    (sharp, blurred far from their originals) come out pixel for pixel as the blur alone leaves them."""
    alike = total = 0
    for example in examples:
        faces = [Face(box=tuple(map(float, box)), score=1.0) for box in example.boxes]
        blur_alone = obfuscate(example.image, faces, ObfuscationConfig(max_similarity=1.0))
        checked = obfuscate(example.image, faces, ObfuscationConfig(max_similarity=DEFAULT_MAX_SIMILARITY))
        height, width = example.image.shape[:2]
        for face in faces:
            left, top, right, bottom = region_box(face, ObfuscationConfig().mask_scale, width, height)
            alike += np.array_equal(checked[top:bottom, left:right], blur_alone[top:bottom, left:right])
            total += 1
    assert total >= 20 and alike >= 0.75 * total, (alike, total)


def test_similarity_is_scikit_images_ssim(example, detected):
    """The check's SSIM is the leak bench's (scikit-image's), computed with OpenCV at run time."""
    from skimage.metrics import structural_similarity

    from fmblur.obfuscate import similarity

    grey = cv2.cvtColor(example.image, cv2.COLOR_RGB2GRAY)
    blurred = cv2.GaussianBlur(grey, (15, 15), 0)
    for face in detected:
        before, after = face_pixels(grey, face), face_pixels(blurred, face)
        assert similarity(before, after) == pytest.approx(structural_similarity(before, after), abs=1e-4)


def _cut_by_the_edge(examples, share: float = 0.3):
    """Each example face of at least 30 px with the photo cut through it, `share` of the face in from each side in
    turn (as a frame's edge cuts a face): yields (cut photo, the face's part still in view)."""
    for example in examples:
        for x1, y1, x2, y2 in example.boxes:
            if y2 - y1 < 30:
                continue
            top, left = int(y1 + share * (y2 - y1)), int(x1 + share * (x2 - x1))
            bottom, right = int(y2 - share * (y2 - y1)), int(x2 - share * (x2 - x1))
            image = example.image
            yield image[top:], (x1, 0, x2, y2 - top)
            yield image[:bottom], (x1, y1, x2, bottom)
            yield image[:, left:], (0, y1, x2 - left, y2)
            yield image[:, :right], (x1, y1, right, y2)


def test_a_face_cut_by_the_edge_is_hidden_up_to_the_edge(examples):
    """A detector's box of a face cut by the picture's edge often stops short of the part still in view; the
    region grows such a box to a whole face's shape. Of the cut faces RetinaFace finds, nearly all are then
    covered whole (57 of 66 on the example photos; 51 with the detected box alone)."""
    detector = create_detector("retinaface")
    found = whole = 0
    for image, visible in _cut_by_the_edge(examples):
        image = np.ascontiguousarray(image)
        covered = coverage_mask(image.shape[:2], detector.detect(image), ObfuscationConfig())
        x1, y1, x2, y2 = (int(round(v)) for v in visible)
        share = covered[y1:y2, x1:x2].mean()
        found += share > 0.3
        whole += share >= 0.99
    assert found >= 50, "precondition: RetinaFace finds most of the cut faces"
    assert whole >= 0.83 * found, (whole, found)
