"""The project's own Faster R-CNN face detectors (the dissertation's stage 1), trained by `fmblur train detector`.

Three backbones, torchvision's FasterRCNN with the dissertation's custom RPN: anchors 16-256 px, aspect
ratios 0.5 / 1.0 / 1.5, two classes (background, face). Trained from scratch here (no pretrained weights
offline): ResNet50 with GroupNorm, MobileNetV3 and VGG16 with trainable BatchNorm. `weights_backbone=
"imagenet"` starts from torchvision's ImageNet weights instead (downloads; for users who are online).

Resizing is left to fmblur (the Detector base class at inference, the augmentation at training), so the
model's own transform only normalises and batches.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torchvision.models import mobilenet_v3_large, resnet50, vgg16_bn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import _mobilenet_extractor, _resnet_fpn_extractor
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.misc import FrozenBatchNorm2d

from fmblur.detectors.base import DetectorUnavailable, RawDetections, SinglePassDetector
from fmblur.detectors.registry import register
from fmblur.device import resolved_device
from fmblur.resources import verify_file
from fmblur.resources import weights_path as shipped_weights_path

BACKBONES = ("mobilenet_v3", "resnet50", "vgg16")
ANCHOR_SIZES = (16, 32, 64, 128, 256)
ASPECT_RATIOS = (0.5, 1.0, 1.5)
CARDS_FILE = "fasterrcnn_cards.json"  # measured val AP@.5 per variant, written by the export step
# Small photos are enlarged to this before detection. Chosen on face-mask training photos (0..239, every 4th;
# ~400 px wide) with the MobileNetV3 weights: AP@.5 0.463 / 0.520 / 0.579 / 0.598 / 0.573 at 640 / 800 / 1024 /
# 1280 / 1600 px. Trained at 320-448 px, these networks find faces of about 20 px poorly, and the face-mask
# faces are mostly smaller than that at native size. Costs ~1.8x the time of 800 px on such photos.
INFERENCE_UPSCALE_TO = 1280


class NoResizeTransform(GeneralizedRCNNTransform):
    """torchvision's detection transform without its resize: normalise and batch only."""

    def resize(self, image, target=None):  # type: ignore[override]
        return image, target


def _group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, channels)


def build_fasterrcnn(backbone: str, weights_backbone: str | None = None, **options) -> FasterRCNN:
    """An untrained 2-class Faster R-CNN with the custom RPN. `options` go to torchvision's FasterRCNN
    (e.g. fewer RPN proposals and sampled RoIs for cheaper CPU training)."""
    pretrained = weights_backbone == "imagenet"
    if weights_backbone not in (None, "imagenet"):
        raise ValueError(f"weights_backbone must be None or 'imagenet', got {weights_backbone!r}")
    if backbone == "mobilenet_v3":
        net = mobilenet_v3_large(
            weights="IMAGENET1K_V1" if pretrained else None,
            norm_layer=FrozenBatchNorm2d if pretrained else nn.BatchNorm2d,
        )
        features = _mobilenet_extractor(net, True, 3 if pretrained else 6)
        sizes = (ANCHOR_SIZES,) * 3
        pool = None
    elif backbone == "resnet50":
        net = resnet50(
            weights="IMAGENET1K_V1" if pretrained else None, norm_layer=FrozenBatchNorm2d if pretrained else _group_norm
        )
        features = _resnet_fpn_extractor(net, 3 if pretrained else 5)
        sizes = tuple((size,) for size in ANCHOR_SIZES)
        pool = None
    elif backbone == "vgg16":
        net = vgg16_bn(weights="IMAGENET1K_V1" if pretrained else None)
        features = net.features[:-1]  # stride 16: the last max-pool would halve small faces again
        features.out_channels = 512
        sizes = (ANCHOR_SIZES,)
        pool = MultiScaleRoIAlign(["0"], output_size=7, sampling_ratio=2)
    else:
        raise ValueError(f"backbone must be one of {', '.join(BACKBONES)}, got {backbone!r}")
    anchors = AnchorGenerator(sizes, (ASPECT_RATIOS,) * len(sizes))
    options = {"box_detections_per_img": 300, "box_score_thresh": 0.01, **options}
    model = FasterRCNN(features, num_classes=2, rpn_anchor_generator=anchors, box_roi_pool=pool, **options)
    model.transform = NoResizeTransform(
        800, 1333, image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225], size_divisible=32
    )
    return model


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


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """A Faster R-CNN state dict (fp32) from a file the training export wrote (fp16 or fp32)."""
    if not path.is_file():
        raise FileNotFoundError(f"weights {path} not found")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds no Faster R-CNN state dict")
    return {key: value.float() if value.is_floating_point() else value for key, value in state.items()}


@functools.cache
def _load_model(backbone: str, device: str) -> FasterRCNN:
    path = weights_path(backbone)
    if not path.is_file():
        raise DetectorUnavailable(
            f"frcnn_{backbone} has no trained weights at {path}; train it: {train_command(backbone)}"
        )
    verify_file(f"fasterrcnn_{backbone}", path)
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
        **options,
    ) -> None:
        if extra_sides is None:
            extra_sides = tuple(inference_settings(self.backbone).get("extra_sides", ()))
        super().__init__(threshold=threshold, upscale_to=upscale_to, extra_sides=tuple(extra_sides), **options)

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
    """The extra passes and default threshold `fmblur train variant-settings` fitted on training photos
    ({} before it ran: one enlarged pass at threshold 0.5)."""
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
