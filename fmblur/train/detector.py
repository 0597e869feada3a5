"""`fmblur train detector`: Faster R-CNN face detectors, from scratch on this CPU (or CUDA, with AMP).

Resumable at any moment: the state (model, optimiser, schedule, position in the epoch) is saved every
`save_every` steps and on SIGTERM/Ctrl-C; running the same command again continues from there. Each epoch
appends losses and fmd-val metrics to history.csv and redraws curves.png (the validation split is only
measured, never used to pick epochs or settings).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from fmblur.datasets import AnnotatedImage, read_source
from fmblur.detectors.frcnn import BACKBONES, INFERENCE_UPSCALE_TO, FasterRCNNDetector, cards_path, weights_path
from fmblur.detectors.frcnn_model import build_fasterrcnn, read_weights
from fmblur.device import torch_device
from fmblur.image_io import read_image
from fmblur.metrics import Predictions, coco_metrics, operating_metrics
from fmblur.resources import record_sha256
from fmblur.train.detector_data import AugmentConfig, FaceDetectionDataset, collate
from fmblur.train.run_state import (
    EpochSteps,
    batch_loader,
    epoch_chunks,
    ignore_stop_signals,
    load_checkpoint,
    publish_history,
    resume_config,
    run_epochs,
)

DEFAULT_DATA = {"train": [{"split": "fmd-train"}, {"split": "wider-train"}], "val": [{"split": "fmd-val"}]}
# Cheaper training, the usual way: fewer RPN proposals and fewer sampled anchors/RoIs per image.
TRAINING_OPTIONS = {
    "rpn_pre_nms_top_n_train": 1000,
    "rpn_post_nms_top_n_train": 500,
    "rpn_batch_size_per_image": 128,
    "box_batch_size_per_image": 128,
}
VAL_UPSCALE_TO = (
    640  # per-epoch validation enlarges photos to this (cheaper than the detectors' 1280; kept for comparable curves)
)


@dataclass
class DetectorTrainingConfig:
    backbone: str = "mobilenet_v3"
    epochs: int = 24
    batch_size: int = 2
    learning_rate: float = 3e-4
    weight_decay: float = 1e-4
    warmup_steps: int = 300
    save_every: int = 25
    augment: bool = True
    sizes: tuple[int, ...] = (320, 384, 448)
    crop: int = 448
    min_face: float = 8.0
    min_visible: float = 0.4  # share of a face a crop must leave for it to stay a face (less: painted over)
    whole_face_p: float = 0.0  # share of the crops of resized photos placed to keep one face whole
    weights_backbone: str | None = None
    # Start from these weights (a file `--export` wrote, e.g. the shipped weights/fasterrcnn_<backbone>.pt)
    # instead of from scratch: continuing a run on new sizes costs a fraction of training again.
    init_weights: str | None = None
    workers: int = 1  # processes preparing batches while the model trains (raise it on a GPU)
    seed: int = 0
    data: dict = field(default_factory=lambda: json.loads(json.dumps(DEFAULT_DATA)))

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {', '.join(BACKBONES)}, got {self.backbone!r}")
        self.sizes = tuple(self.sizes)
        self.augmentation()  # checks min_visible before any data is read
        if not self.sizes or min(self.sizes) < 32 or self.crop < 32:
            raise ValueError(f"sizes and crop must be at least 32 px, got sizes {self.sizes} and crop {self.crop}")
        if self.workers < 0:
            raise ValueError(f"workers must be 0 or more, got {self.workers}")

    def augmentation(self) -> AugmentConfig:
        """The training photos' augmentation these options describe."""
        return AugmentConfig(
            sizes=self.sizes,
            crop=self.crop,
            min_face=self.min_face,
            min_visible=self.min_visible,
            whole_face_p=self.whole_face_p,
            enabled=self.augment,
        )


def load_records(sources: list[dict], data_root: Path | None = None) -> list[AnnotatedImage]:
    """The photos of a data config's sources; a source's `"repeat": n` lists its photos n times per epoch."""
    records = []
    for source in sources:
        found = read_source({key: value for key, value in source.items() if key != "repeat"}, data_root)
        records.extend(found * int(source.get("repeat", 1)))
    missing = [r.path for r in records if not r.path.is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} image(s) of the data config are missing, e.g. {missing[0]}")
    return records


def _start_worker(dataset: FaceDetectionDataset, worker_id: int) -> None:
    """Each DataLoader worker draws its own augmentations: albumentations keeps its own generator, which every
    forked worker would otherwise copy and repeat."""
    ignore_stop_signals(worker_id)
    dataset.transform.set_random_seed(torch.initial_seed() % 2**32)


class _InTraining(FasterRCNNDetector):
    """A registry-style detector around the model being trained, for validation."""

    backbone = "in-training"

    def __init__(self, model, **options) -> None:
        super().__init__(**options)
        self._model = model
        self._loaded = True

    def _load(self) -> None:  # the model is already there
        pass


def validate(model, records: list[AnnotatedImage], upscale_to: int = VAL_UPSCALE_TO) -> dict:
    """AP@.5 (COCO), recall at IoU 0.5 at threshold 0.5, on `records` enlarged to `upscale_to` when smaller."""

    model.eval()
    detector = _InTraining(model, threshold=0.05, upscale_to=upscale_to)
    predictions = Predictions()
    for record in records:
        faces = detector.detect(read_image(record.path)[0])
        predictions.boxes.append(np.array([f.box for f in faces], np.float64).reshape(-1, 4))
        predictions.scores.append(np.array([f.score for f in faces], np.float64))
    coco, _, _ = coco_metrics(records, predictions)
    operating = operating_metrics(records, predictions, 0.5)
    model.train()
    return {"val_ap50": coco["AP@.5"], "val_ap": coco["AP@[.5:.95]"], "val_recall": operating["recall@0.5"]}


def _learning_rate(config: DetectorTrainingConfig, step: int, total: int) -> float:
    """Linear warm-up, then cosine decay to zero."""
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, total - config.warmup_steps)
    return config.learning_rate * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def train(config: DetectorTrainingConfig, run_dir: Path, log=print, progress_factory=None, data_root=None) -> Path:
    # A missing initial file or bad data stop here, before the run folder is written.
    if config.init_weights and not Path(config.init_weights).is_file():
        raise FileNotFoundError(f"initial weights {config.init_weights} not found")
    train_records = load_records(config.data["train"], data_root)
    val_records = load_records(config.data.get("val", []), data_root)
    config, state = resume_config(run_dir, config, changeable=("epochs", "save_every", "workers"))
    dataset = FaceDetectionDataset(train_records, config.augmentation())
    device = torch_device()
    torch.manual_seed(config.seed)
    model = build_fasterrcnn(config.backbone, config.weights_backbone, **TRAINING_OPTIONS)
    if config.init_weights and state is None:  # a resumed run restores its own weights below
        model.load_state_dict(read_weights(Path(config.init_weights)))
    model = model.to(device)
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(parameters, lr=config.learning_rate, weight_decay=config.weight_decay)
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda")
    steps_per_epoch = len(dataset) // config.batch_size
    total_steps = steps_per_epoch * config.epochs
    log(
        f"{config.backbone}: {len(train_records)} training samples per epoch, {len(val_records)} validation photos, "
        f"{steps_per_epoch} steps per epoch on {device.type}"
    )

    def batches(epoch: int, first_step: int):
        chunks = epoch_chunks(config.seed, epoch, len(dataset), config.batch_size, first_step, steps_per_epoch)
        return batch_loader(
            chunks,
            lambda indices: collate([dataset[i] for i in indices]),
            config.workers,
            functools.partial(_start_worker, dataset),
        )

    def train_step(batch, global_step: int) -> dict[str, float]:
        for group in optimiser.param_groups:
            group["lr"] = _learning_rate(config, global_step, total_steps)
        images, targets = batch
        images = [image.to(device) for image in images]
        targets = [{k: v.to(device) for k, v in target.items()} for target in targets]
        with torch.autocast(device.type, enabled=device.type == "cuda"):
            losses = model(images, targets)
            loss = sum(losses.values())
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss became {loss.item()}")
        optimiser.zero_grad()
        scaler.scale(loss).backward()
        scaler.unscale_(optimiser)
        torch.nn.utils.clip_grad_norm_(parameters, 10.0)
        scaler.step(optimiser)
        scaler.update()
        return {name: value.item() for name, value in losses.items()}

    def end_of_epoch(epoch: int) -> dict[str, float]:
        metrics = validate(model, val_records) if val_records else {}
        return {**metrics, "lr": optimiser.param_groups[0]["lr"]}

    model.train()
    parts = {"model": model, "optimiser": optimiser}
    steps = EpochSteps(steps_per_epoch, batches, train_step, end_of_epoch)
    return run_epochs(run_dir, config, parts, state, steps, f"Faster R-CNN {config.backbone}", log, progress_factory)


def initial_weights_data(config: DetectorTrainingConfig, shipped_card: dict) -> list[str]:
    """What the run's initial weights were trained on: the shipped card's data when they are the shipped file
    (cards written before they recorded data: the default mix), else unknown, which the licence treats as
    restricted."""
    if Path(config.init_weights).resolve() != weights_path(config.backbone).resolve():
        return ["unknown (initial weights)"]
    default = [source["split"] for source in DEFAULT_DATA["train"]]
    return shipped_card.get("train_data", default)


def export(run_dir: Path, manifest: Path | None = None, data_root=None) -> dict:
    """Write weights/fasterrcnn_<backbone>.pt (fp16 when AP@.5 drops by less than 0.005, else fp32), record its
    SHA-256 in the manifest and its val AP@.5 in weights/fasterrcnn_cards.json. Measured at the registry
    detector's inference size, so the app's menu shows what `fmblur eval` measures."""
    state = load_checkpoint(run_dir)
    if state is None:
        raise FileNotFoundError(f"no checkpoint in {run_dir}")
    config = DetectorTrainingConfig(**json.loads((run_dir / "config.json").read_text()))
    model = build_fasterrcnn(config.backbone)
    model.load_state_dict(state["model"])
    # A run without a validation source (chosen and fitted on a held-out part of the training split) is still
    # measured on fmd-val here, for the card; nothing is chosen by it but fp16 against fp32.
    val_records = load_records(config.data.get("val") or [{"split": "fmd-val"}], data_root)
    full = validate(model, val_records, INFERENCE_UPSCALE_TO)
    half_state = {k: (v.half() if v.is_floating_point() else v) for k, v in state["model"].items()}
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in half_state.items()})
    half = validate(model, val_records, INFERENCE_UPSCALE_TO)
    use_half = full["val_ap50"] - half["val_ap50"] < 0.005
    target = weights_path(config.backbone)
    torch.save({"state_dict": half_state if use_half else state["model"], "epochs": int(state["epoch"])}, target)
    if manifest is not None:  # the target sits beside the manifest
        digest = record_sha256(
            f"fasterrcnn_{config.backbone}", target, f"trained here: fmblur train detector ({run_dir.name})"
        )
    else:
        digest = hashlib.sha256(target.read_bytes()).hexdigest()
    cards_file = cards_path()
    cards = json.loads(cards_file.read_text()) if cards_file.is_file() else {}
    train_data = [source.get("split") or str(next(iter(source.values()))) for source in config.data.get("train", [])]
    if config.init_weights:
        train_data = sorted({*train_data, *initial_weights_data(config, cards.get(config.backbone, {}))})
    cards[config.backbone] = {
        "fmd_val_ap50": round((half if use_half else full)["val_ap50"], 4),
        "epochs": int(state["epoch"]),
        "upscale_to": INFERENCE_UPSCALE_TO,
        "fp16": use_half,
        "fp32_ap50": round(full["val_ap50"], 4),
        "fp16_ap50": round(half["val_ap50"], 4),
        # the data decides the weights' licence (WIDER FACE: research use only), the initial weights' data included
        "train_data": train_data,
        **({"initialised_from": Path(config.init_weights).name} if config.init_weights else {}),
    }
    # New weights drop the old entry's fitted inference settings: `fmblur train variant-settings` fits them again.
    cards_file.write_text(json.dumps(cards, indent=2) + "\n")
    publish_history(run_dir, f"frcnn_{config.backbone}")
    return {"path": str(target), "sha256": digest, **cards[config.backbone]}
