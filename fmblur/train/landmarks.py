"""`fmblur train landmarks`: the ResNet18 landmark regressor, distilled from RetinaFace and dlib.

Data: face-mask photos 0..239 and WIDER FACE subset training photos (never the validation splits), faces
where the two teachers agree (fmblur.landmarks.teachers), minus the photos in examples/ (the tests' faces).
A tenth of the training photos (by name) is kept aside for the per-epoch curve; the reported NME is measured
on fmd-val and wider-val by `fmblur eval landmarks`.
"""

from __future__ import annotations

import hashlib
import json
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from fmblur.face import LANDMARK_NAMES
from fmblur.geometry import apply_affine, normalised_mean_error
from fmblur.landmarks.crops import CROP_SCALE, CROP_SIZE, FLIP_ORDER, crop_transform, warp_crop
from fmblur.landmarks.resnet18_model import build_model, to_tensor
from fmblur.landmarks.teachers import AGREEMENT, LandmarkSet, cached_faces
from fmblur.resources import examples_dir, record_sha256
from fmblur.train.augment import Photometric
from fmblur.train.run_state import (
    StopRequested,
    append_history,
    load_checkpoint,
    plot_history,
    save_checkpoint,
    truncate_history,
)

TRAIN_SPLITS = ("fmd-train", "wider-train")


@dataclass
class LandmarkTrainingConfig:
    epochs: int = 40
    batch_size: int = 32
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    loss: str = "l2"  # the dissertation's choice; "wing" (Feng et al. 2018) is the alternative
    points: tuple[str, ...] = LANDMARK_NAMES
    augment: bool = True
    weights_backbone: str | None = None  # "imagenet" downloads torchvision's weights (online only)
    agreement: float = AGREEMENT
    seed: int = 0
    splits: tuple[str, ...] = field(default=TRAIN_SPLITS)


def _photometric():
    """The dissertation's listing on the face crop (geometry is done by the box jitter), with stronger blur:
    the model must find landmarks on blurred faces too."""
    import albumentations as A

    strengths = Photometric(
        max_box_blur=7,
        max_gaussian_blur=15,
        blur_p=0.4,
        brightness_contrast_p=0.5,
        colour_p=0.3,
        fog_p=0.05,
        downscale=(0.25, 0.75),
        downscale_p=0.25,
    )
    return A.Compose([*strengths.transforms(), A.ToGray(p=0.1), A.ImageCompression(quality_range=(30, 95), p=0.3)])


def jittered_crop(
    faces: LandmarkSet, index: int, rng: np.random.Generator, jitter: bool
) -> tuple[np.ndarray, np.ndarray]:
    """The training crop of face `index` (CROP_SIZE square) and its target points in crop pixels.

    With jitter the box is shifted (+-10 % of its size), scaled (0.85-1.2x), rotated (+-15 degrees) and
    mirrored half of the time: detectors' boxes differ in tightness and centring from the ground truth.
    """
    box = faces.boxes[index].astype(np.float64)
    points = faces.target[index].astype(np.float64)
    crop = faces.crops[index]
    if jitter:
        width, height = box[2] - box[0], box[3] - box[1]
        shift = rng.uniform(-0.1, 0.1, 2) * (width, height)
        scale = rng.uniform(0.85, 1.2)
        centre = (box[:2] + box[2:]) / 2 + shift
        half = np.array([width, height]) * scale / 2
        box = np.concatenate([centre - half, centre + half])
    matrix = crop_transform(box, CROP_SCALE, CROP_SIZE)
    if jitter:
        rotation = cv2.getRotationMatrix2D((CROP_SIZE / 2, CROP_SIZE / 2), rng.uniform(-15, 15), 1.0)
        matrix = rotation @ np.vstack([matrix, [0, 0, 1]])
    image = warp_crop(crop, matrix, CROP_SIZE)
    target = apply_affine(matrix, points)
    if jitter and rng.random() < 0.5:
        image = image[:, ::-1]
        target = target[FLIP_ORDER]
        target[:, 0] = CROP_SIZE - target[:, 0]
    return np.ascontiguousarray(image), target


def point_loss(prediction: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """prediction and target in crop units (coordinates / CROP_SIZE)."""
    if kind == "l2":
        return torch.nn.functional.mse_loss(prediction, target)
    if kind == "wing":
        # Wing loss in crop pixels, w=10, epsilon=2 (the paper's values for ~100 px faces).
        width, epsilon = 10.0, 2.0
        error = (prediction - target).abs() * CROP_SIZE
        offset = width - width * np.log(1 + width / epsilon)
        return torch.where(error < width, width * torch.log1p(error / epsilon), error - offset).mean()
    raise ValueError(f"loss must be l2 or wing, got {kind!r}")


def _holdout(sources: np.ndarray) -> np.ndarray:
    """A stable tenth of the training photos (by name) for the per-epoch curve."""
    photos = [source.split("#")[0] for source in sources]
    return np.array([zlib.crc32(photo.encode()) % 10 == 0 for photo in photos])


def load_training_faces(config: LandmarkTrainingConfig, cache_dir: Path, progress_factory=None) -> LandmarkSet:
    """Agreeing faces of the training splits, except those of the photos in examples/ (the tests' held-out faces)."""
    sets = [cached_faces(split, cache_dir, progress_factory) for split in config.splits]
    merged = LandmarkSet(
        **{name: np.concatenate([getattr(s, name) for s in sets]) for name in LandmarkSet.__dataclass_fields__}
    )
    held_out = {path.name for path in examples_dir().glob("*.jpg")}
    from_examples = np.array([source.split("#")[0] in held_out for source in merged.sources])
    return merged.subset((merged.agreement <= config.agreement) & ~from_examples)


@torch.inference_mode()
def predict_crops(model: torch.nn.Module, crops: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """(N, P, 2) points in crop pixels for (N, CROP_SIZE, CROP_SIZE, 3) crops."""
    model.eval()
    outputs = [model(to_tensor(crops[i : i + batch_size])).numpy() for i in range(0, len(crops), batch_size)]
    return np.concatenate(outputs).reshape(len(crops), -1, 2) * CROP_SIZE


def _batch(faces: LandmarkSet, indices: np.ndarray, rng, config, photometric, point_index) -> tuple:
    images, targets = [], []
    for index in indices:
        image, target = jittered_crop(faces, int(index), rng, config.augment)
        if photometric is not None:
            image = photometric(image=image)["image"]
        images.append(image)
        targets.append(target[point_index] / CROP_SIZE)
    return to_tensor(np.stack(images)), torch.tensor(np.stack(targets), dtype=torch.float32).reshape(len(indices), -1)


def train(config: LandmarkTrainingConfig, run_dir: Path, cache_dir: Path, log=print, progress_factory=None) -> Path:
    """Train (or resume) in run_dir; returns the checkpoint path. Stops cleanly on SIGTERM/Ctrl-C."""
    run_dir.mkdir(parents=True, exist_ok=True)
    config_path = run_dir / "config.json"
    state = load_checkpoint(run_dir)
    if state is not None:
        saved = json.loads(config_path.read_text())
        saved["points"], saved["splits"] = tuple(saved["points"]), tuple(saved["splits"])
        if saved != asdict(config) | {"epochs": saved["epochs"]}:
            raise ValueError(f"{run_dir} holds a run with another configuration ({config_path}); use a new --out")
        saved["epochs"] = config.epochs  # more epochs may be asked of a finished run
        config = LandmarkTrainingConfig(**saved)
    config_path.write_text(json.dumps(asdict(config), indent=2))

    faces = load_training_faces(config, cache_dir, progress_factory)
    holdout = _holdout(faces.sources)
    train_faces, curve_faces = faces.subset(~holdout), faces.subset(holdout)
    point_index = [LANDMARK_NAMES.index(name) for name in config.points]
    curve = [jittered_crop(curve_faces, i, None, False) for i in range(len(curve_faces.crops))]
    curve_crops = np.stack([crop for crop, _ in curve])
    curve_targets = np.stack([target for _, target in curve])
    log(f"training faces {len(train_faces.crops)}, curve faces {len(curve_faces.crops)}")

    torch.manual_seed(config.seed)
    model = build_model(len(config.points), config.weights_backbone)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    steps_per_epoch = len(train_faces.crops) // config.batch_size
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=config.learning_rate, total_steps=config.epochs * steps_per_epoch, pct_start=0.1
    )
    epoch, step = 0, 0
    if state is not None:
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        scheduler.load_state_dict(state["scheduler"])
        epoch, step = int(state["epoch"]), int(state["step"])
        truncate_history(run_dir, epoch)
        log(
            f"run already has {epoch} epochs"
            if epoch >= config.epochs
            else f"resumed at epoch {epoch + 1}, step {step}"
        )
    photometric = _photometric() if config.augment else None

    def snapshot() -> dict:
        return {
            "model": model.state_dict(),
            "optimiser": optimiser.state_dict(),
            "scheduler": scheduler.state_dict(),
            "epoch": epoch,
            "step": step,
        }

    with StopRequested() as stop:
        while epoch < config.epochs:
            # The epoch's order depends only on (seed, epoch): a resumed run skips the batches already done.
            order = np.random.default_rng([config.seed, epoch]).permutation(len(train_faces.crops))
            rng = np.random.default_rng([config.seed, epoch, step])
            model.train()
            started, losses = time.perf_counter(), []
            bar = progress_factory(f"epoch {epoch + 1}/{config.epochs}", steps_per_epoch) if progress_factory else None
            while step < steps_per_epoch:
                if stop.requested:
                    save_checkpoint(run_dir, snapshot())
                    log(f"stopped at epoch {epoch + 1}, step {step}; run the same command to resume")
                    return run_dir / "last.pt"
                indices = order[step * config.batch_size : (step + 1) * config.batch_size]
                images, targets = _batch(train_faces, indices, rng, config, photometric, point_index)
                loss = point_loss(model(images), targets, config.loss)
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                scheduler.step()
                losses.append(loss.item())
                step += 1
                if bar is not None:
                    bar()
            predicted = predict_crops(model, curve_crops)
            error = normalised_mean_error(predicted, curve_targets[:, point_index])
            epoch, step = epoch + 1, 0
            append_history(
                run_dir,
                {
                    "epoch": epoch,
                    "train_loss": float(np.mean(losses)),
                    "holdout_nme": float(np.mean(error)),
                    "lr": scheduler.get_last_lr()[0],
                    "seconds": round(time.perf_counter() - started, 1),
                },
            )
            save_checkpoint(run_dir, snapshot())
            plot_history(run_dir, "ResNet18 landmarks")
            log(f"epoch {epoch}: loss {np.mean(losses):.5f}, holdout NME {np.mean(error):.4f}")
    return run_dir / "last.pt"


def export(run_dir: Path, target: Path, manifest: Path | None = None) -> str:
    """Write the run's model as an fp16 state dict with its point names; record its SHA-256 in the manifest."""
    state = load_checkpoint(run_dir)
    if state is None:
        raise FileNotFoundError(f"no checkpoint in {run_dir}")
    config = json.loads((run_dir / "config.json").read_text())
    payload = {
        "state_dict": {k: (v.half() if v.is_floating_point() else v) for k, v in state["model"].items()},
        "point_names": list(config["points"]),
        "epochs": int(state["epoch"]),
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, target)
    source = f"trained here: fmblur train landmarks ({run_dir.name})"
    if manifest is not None:  # the target sits beside the manifest
        return record_sha256("landmarks_resnet18", target, source)
    return hashlib.sha256(target.read_bytes()).hexdigest()
