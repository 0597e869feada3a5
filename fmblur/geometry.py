"""Geometry at the bottom of fmblur: box IoU, matching detections to boxes, non-maximum suppression, and
landmark distances. Runtime, evaluation and training all import it; it imports nothing of fmblur.

NumPy only: these were torchvision's `box_iou` and `nms`, but importing torch costs about 3 s at every start of
the CLI and the app, and the ONNX detectors that anonymise by default need no torch. Same formulas, float32;
checked against torchvision on random boxes (IoU equal to 1e-6; NMS keeps the same boxes in the same order
except where an IoU equals the threshold to the last bit, which quantised test boxes produce)."""

from __future__ import annotations

import numpy as np


def _areas_and_intersections(boxes_a: np.ndarray, boxes_b: np.ndarray):
    """(area of each a box, area of each b box, (len(a), len(b)) intersection areas), float32."""
    a = np.asarray(boxes_a, np.float32).reshape(-1, 4)
    b = np.asarray(boxes_b, np.float32).reshape(-1, 4)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    sides = np.clip(np.minimum(a[:, None, 2:], b[None, :, 2:]) - np.maximum(a[:, None, :2], b[None, :, :2]), 0, None)
    return area_a, area_b, sides[..., 0] * sides[..., 1]


def iou_matrix(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) IoU of x1, y1, x2, y2 boxes."""
    area_a, area_b, inter = _areas_and_intersections(boxes_a, boxes_b)
    with np.errstate(divide="ignore", invalid="ignore"):  # two empty boxes: nan, as torchvision gives
        return inter / (area_a[:, None] + area_b[None, :] - inter)


def match_detections(truth: np.ndarray, detections: np.ndarray, scores: np.ndarray, iou: float = 0.5) -> np.ndarray:
    """For each ground-truth box, the index of the detection matched to it, or -1.

    Detections are taken in descending score order; each claims the unmatched truth box it overlaps most.
    """
    matched = np.full(len(truth), -1, np.int64)
    overlaps = iou_matrix(detections, truth)
    for det in np.argsort(-np.asarray(scores)):
        if overlaps.shape[1] == 0:
            break
        candidates = np.where(matched < 0, overlaps[det], -1.0)
        best = int(np.argmax(candidates))
        if candidates[best] >= iou:
            matched[best] = det
    return matched


def _greedy_suppression(boxes: np.ndarray, scores: np.ndarray, suppresses) -> np.ndarray:
    """Indices kept, highest score first: each kept box removes the lower-scoring boxes `suppresses(kept box,
    remaining boxes)` marks."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    order = np.argsort(-np.asarray(scores, np.float32).reshape(-1), kind="stable")
    keep = []
    while order.size:
        best, order = order[0], order[1:]
        keep.append(best)
        order = order[~suppresses(boxes[best][None], boxes[order])]
    return np.array(keep, np.int64)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices kept by non-maximum suppression, highest score first."""
    # nan IoU (an empty box) is not over the threshold: the box stays.
    return _greedy_suppression(boxes, scores, lambda best, rest: iou_matrix(best, rest)[0] > iou_threshold)


def intersection_over_smaller(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) share of the smaller box of each pair that lies in both (1 where one box nests in
    the other, whatever their sizes; IoU would be small when one is half the other)."""
    area_a, area_b, inter = _areas_and_intersections(boxes_a, boxes_b)
    with np.errstate(divide="ignore", invalid="ignore"):
        return inter / np.minimum(area_a[:, None], area_b[None, :])


def suppress_nested(boxes: np.ndarray, scores: np.ndarray, share: float) -> np.ndarray:
    """Indices kept, highest score first: after each kept box, the lower-scoring boxes of which at least `share`
    (of the smaller of the two) lies inside it go (MTCNN's "Min" NMS). NMS by IoU keeps a box over the upper half
    of a face beside the face's own box (IoU about 0.5): one of them is a false positive."""
    return _greedy_suppression(boxes, scores, lambda best, rest: intersection_over_smaller(best, rest)[0] >= share)


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(N, 2) points mapped by a 2x3 affine matrix."""
    points, matrix = np.asarray(points, np.float64).reshape(-1, 2), np.asarray(matrix, np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def inter_ocular(points: np.ndarray) -> np.ndarray:
    """Distance between the two eye points of (..., 5, 2) arrays."""
    return np.linalg.norm(points[..., 0, :] - points[..., 1, :], axis=-1)


def normalised_mean_error(predicted: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per face: mean point distance / the target's inter-ocular distance."""
    return np.linalg.norm(predicted - target, axis=-1).mean(axis=-1) / np.maximum(inter_ocular(target), 1.0)


def crops_around(boxes: np.ndarray, size: tuple[int, int], margin: int, grid: int) -> list[tuple[int, int, int, int]]:
    """Integer rectangles (x1, y1, x2, y2) inside a (width, height) image that hold each box with `margin`
    pixels of picture around it, their top-left corners on a `grid`-pixel lattice; overlapping rectangles are
    joined into one. A strided network sees such a crop's inside as it sees the whole image there: same grid,
    and context enough for its receptive field (the caller picks the margin)."""
    width, height = size
    rects = []
    for x1, y1, x2, y2 in np.asarray(boxes, np.float64).reshape(-1, 4):
        left = max(0, int(np.floor(x1 - margin)) // grid * grid)
        top = max(0, int(np.floor(y1 - margin)) // grid * grid)
        right, bottom = min(width, int(np.ceil(x2 + margin))), min(height, int(np.ceil(y2 + margin)))
        if right > left and bottom > top:
            rects.append([left, top, right, bottom])
    joined: list[list[int]] = []
    while rects:  # join until no two overlap (a join can make a rectangle meet a third)
        rect = rects.pop()
        meets = [r for r in rects if rect[0] < r[2] and r[0] < rect[2] and rect[1] < r[3] and r[1] < rect[3]]
        if not meets:
            joined.append(rect)
            continue
        rects = [r for r in rects if all(r is not m for m in meets)] + joined
        joined = []
        corners = np.array([rect, *meets])
        rects.append([*corners[:, :2].min(0).tolist(), *corners[:, 2:].max(0).tolist()])
    return [tuple(r) for r in joined]
