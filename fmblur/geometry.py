"""Geometry at the bottom of fmblur: box IoU, matching detections to boxes, non-maximum suppression, and
landmark distances. Runtime, evaluation and training all import it; it imports nothing of fmblur."""

from __future__ import annotations

import numpy as np
import torch
import torchvision


def iou_matrix(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) IoU of x1, y1, x2, y2 boxes."""
    if len(boxes_a) == 0 or len(boxes_b) == 0:
        return np.zeros((len(boxes_a), len(boxes_b)), np.float32)
    return torchvision.ops.box_iou(
        torch.as_tensor(boxes_a, dtype=torch.float32), torch.as_tensor(boxes_b, dtype=torch.float32)
    ).numpy()


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


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices kept by non-maximum suppression, highest score first."""
    if len(boxes) == 0:
        return np.zeros((0,), np.int64)
    keep = torchvision.ops.nms(
        torch.as_tensor(boxes, dtype=torch.float32), torch.as_tensor(scores, dtype=torch.float32), iou_threshold
    )
    return keep.numpy()


def inter_ocular(points: np.ndarray) -> np.ndarray:
    """Distance between the two eye points of (..., 5, 2) arrays."""
    return np.linalg.norm(points[..., 0, :] - points[..., 1, :], axis=-1)


def normalised_mean_error(predicted: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per face: mean point distance / the target's inter-ocular distance."""
    return np.linalg.norm(predicted - target, axis=-1).mean(axis=-1) / np.maximum(inter_ocular(target), 1.0)
