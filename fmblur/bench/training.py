"""Training cost of the Faster R-CNN variants: seconds per step, and what an epoch and a run would take.

    python -m fmblur.bench training [--backbones mobilenet_v3 resnet50 vgg16] [--steps 8]

Each backbone is built from scratch with the training's options and takes `--steps` real steps (the default
data and augmentation, batch 2, forward + backward + AdamW) on a throwaway copy: no run folder is touched.
Data loading and augmentation are timed apart from the model's step. The first step is left out of the
median (allocator warm-up).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from fmblur.detectors.frcnn import BACKBONES
from fmblur.detectors.frcnn_model import build_fasterrcnn
from fmblur.train.detector import TRAINING_OPTIONS, DetectorTrainingConfig, load_records
from fmblur.train.detector_data import FaceDetectionDataset, collate


def step_seconds(backbone: str, steps: int) -> tuple[float, float, int]:
    """Median seconds of the model's step and of loading its batch, and the number of steps per epoch."""
    config = DetectorTrainingConfig(backbone=backbone)
    dataset = FaceDetectionDataset(load_records(config.data["train"]), config.augmentation())
    torch.manual_seed(config.seed)
    model = build_fasterrcnn(backbone, **TRAINING_OPTIONS).train()
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    order = np.random.default_rng(config.seed).permutation(len(dataset))
    model_times, data_times = [], []
    for step in range(steps + 1):
        start = time.perf_counter()
        indices = order[step * config.batch_size : (step + 1) * config.batch_size]
        images, targets = collate([dataset[int(i)] for i in indices])
        loaded = time.perf_counter()
        loss = sum(model(images, targets).values())
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if step:  # the first step warms the allocator up
            data_times.append(loaded - start)
            model_times.append(time.perf_counter() - loaded)
    return statistics.median(model_times), statistics.median(data_times), len(dataset) // config.batch_size


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m fmblur.bench training", description=__doc__)
    parser.add_argument("--backbones", nargs="+", default=list(BACKBONES), choices=BACKBONES)
    parser.add_argument("--steps", type=int, default=8, help="timed steps per backbone (median reported)")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    epochs = DetectorTrainingConfig().epochs
    print(f"{torch.get_num_threads()} torch threads, CUDA: {torch.cuda.is_available()} (this benchmark uses the CPU)\n")
    print(f"| backbone | s per step (model) | s per step (data) | min per epoch | h for {epochs} epochs |")
    print("|---|---|---|---|---|")
    for backbone in args.backbones:
        model_s, data_s, steps_per_epoch = step_seconds(backbone, args.steps)
        epoch_min = (model_s + data_s) * steps_per_epoch / 60
        print(
            f"| {backbone} | {model_s:.2f} | {data_s:.2f} | {epoch_min:.0f} | {epoch_min * epochs / 60:.1f} |",
            flush=True,
        )
