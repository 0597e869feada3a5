"""The project's own Faster R-CNN face detectors (the dissertation's stage 1), trained by `fmblur train detector`:
their registry entries, cards and inference settings. The network itself is `frcnn_model` (torch), imported
only when a variant loads.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fmblur.detectors.base import DetectorUnavailable, RawDetections, SinglePassDetector
from fmblur.detectors.registry import register
from fmblur.device import resolved_device
from fmblur.resources import verify_file
from fmblur.resources import weights_path as shipped_weights_path

if TYPE_CHECKING:
    import torch
    from torchvision.models.detection import FasterRCNN

BACKBONES = ("mobilenet_v3", "resnet50", "vgg16")
CARDS_FILE = "fasterrcnn_cards.json"  # measured val AP@.5 per variant, written by the export step
# Small photos are enlarged to this before detection. Chosen on face-mask training photos (0..239, every 4th;
# ~400 px wide) with the MobileNetV3 weights: AP@.5 0.463 / 0.520 / 0.579 / 0.598 / 0.573 at 640 / 800 / 1024 /
# 1280 / 1600 px. Trained at 320-448 px, these networks find faces of about 20 px poorly, and the face-mask
# faces are mostly smaller than that at native size. Costs ~1.8x the time of 800 px on such photos.
INFERENCE_UPSCALE_TO = 1280


def weights_file(backbone: str) -> str:
    return f"fasterrcnn_{backbone}.pt"


def weights_path(backbone: str) -> Path:
    return shipped_weights_path(weights_file(backbone))


def cards_path() -> Path:
    return shipped_weights_path(CARDS_FILE)


def train_command(backbone: str) -> str:
    return f"fmblur train detector --backbone {backbone}"


def variant_card(backbone: str) -> dict:
    """The variant's entry in weights/fasterrcnn_cards.json (written by the export step), or {}."""
    cards = cards_path()
    return json.loads(cards.read_text()).get(backbone, {}) if cards.is_file() else {}


def variant_status(backbone: str) -> str:
    """The variant's name when its weights are here, else the command that trains it."""
    if weights_path(backbone).is_file():
        return f"frcnn_{backbone}"
    return f"frcnn_{backbone}: not trained yet ({train_command(backbone)})"


@functools.cache
def _load_model(backbone: str, device: str) -> FasterRCNN:
    path = weights_path(backbone)
    if not path.is_file():
        raise DetectorUnavailable(
            f"frcnn_{backbone} has no trained weights at {path}; train it: {train_command(backbone)}"
        )
    verify_file(f"fasterrcnn_{backbone}", path)
    from fmblur.detectors.frcnn_model import build_fasterrcnn, read_weights  # torch: only when a variant loads

    model = build_fasterrcnn(backbone)
    model.load_state_dict(read_weights(path))
    return model.eval().to(device)


class FasterRCNNDetector(SinglePassDetector):
    backbone = ""
    has_landmarks = False
    default_threshold = 0.5
    licence = "trained here on face-mask (CC0) and WIDER FACE (research use only) photos"

    def __init__(
        self,
        threshold: float | None = None,
        upscale_to: int = INFERENCE_UPSCALE_TO,
        extra_sides: tuple[int, ...] | None = None,
        nested_share: float | None = None,
        **options,
    ) -> None:
        settings = inference_settings(self.backbone)
        if extra_sides is None:
            extra_sides = tuple(settings.get("extra_sides", ()))
        if nested_share is None:
            nested_share = float(settings.get("nested_share") or 0.0)
        super().__init__(
            threshold=threshold,
            upscale_to=upscale_to,
            extra_sides=tuple(extra_sides),
            nested_share=nested_share,
            **options,
        )

    @classmethod
    def training_command(cls) -> str:
        return train_command(cls.backbone)

    def _load(self) -> None:
        self._model = _load_model(self.backbone, resolved_device())

    def runtime(self) -> str:
        return f"torch {self._device.type}" if self._loaded else super().runtime()

    @property
    def _device(self) -> torch.device:
        return next(self._model.parameters()).device

    def _detect(self, image: np.ndarray, threshold: float) -> RawDetections:
        import torch

        tensor = torch.from_numpy(np.array(image)).permute(2, 0, 1).float().div_(255)  # a copy: inputs may be read-only
        with torch.inference_mode():
            output = self._model([tensor.to(self._device)])[0]
        keep = output["scores"] >= min(threshold, 0.05)
        return RawDetections(
            boxes=output["boxes"][keep].cpu().numpy().astype(np.float32),
            scores=output["scores"][keep].cpu().numpy().astype(np.float32),
        )


class FromCard:
    """A class attribute of a variant read from its card when first asked for (not at import)."""

    def __init__(self, read: Callable[[str], object]) -> None:
        self.read = read

    def __get__(self, instance: object, owner: type[FasterRCNNDetector]) -> object:
        return self.read(owner.backbone)


def inference_settings(backbone: str) -> dict:
    """The extra passes, nested-box suppression and default threshold `fmblur train variant-settings` fitted on
    training photos ({} before it ran: one enlarged pass at threshold 0.5)."""
    return variant_card(backbone).get("inference", {})


def fitted_threshold(backbone: str) -> float:
    return float(inference_settings(backbone).get("threshold", FasterRCNNDetector.default_threshold))


def weights_licence(backbone: str) -> str:
    """What the variant's weights may be used for, from the training data its card records (cards written
    before the card recorded it were trained on the default mix, which includes WIDER FACE)."""
    train_data = variant_card(backbone).get("train_data")
    if train_data and all(name.startswith("fmd-") for name in train_data):
        return "trained here on face-mask photos only (CC0)"
    return FasterRCNNDetector.licence


def _variant(backbone: str) -> type[FasterRCNNDetector]:
    cls = type(
        f"FasterRCNN_{backbone}",
        (FasterRCNNDetector,),
        {
            "backbone": backbone,
            "weights_file": weights_file(backbone),
            "source": f"trained here: {train_command(backbone)}",
            "licence": FromCard(weights_licence),
            "default_threshold": FromCard(fitted_threshold),
            "__doc__": f"Faster R-CNN, {backbone} backbone.",
        },
    )
    return register(f"frcnn_{backbone}")(cls)


for _backbone in BACKBONES:
    _variant(_backbone)
