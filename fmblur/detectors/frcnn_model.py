"""The Faster R-CNN network itself (torchvision), apart from the registry entries in `frcnn`, so that
registering and listing the variants imports no torch (about 3 s): only building or loading one does.

Three backbones, torchvision's FasterRCNN with the dissertation's custom RPN: anchors 16-256 px, aspect
ratios 0.5 / 1.0 / 1.5, two classes (background, face). Trained from scratch here (no pretrained weights
offline): ResNet50 with GroupNorm, MobileNetV3 and VGG16 with trainable BatchNorm. `weights_backbone=
"imagenet"` starts from torchvision's ImageNet weights instead (downloads; for users who are online).
Resizing is left to fmblur (the Detector base class at inference, the augmentation at training), so the
model's own transform only normalises and batches.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchvision.models import mobilenet_v3_large, resnet50, vgg16_bn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import _mobilenet_extractor, _resnet_fpn_extractor
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.misc import FrozenBatchNorm2d

ANCHOR_SIZES = (16, 32, 64, 128, 256)
ASPECT_RATIOS = (0.5, 1.0, 1.5)


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
        raise ValueError(f"unknown Faster R-CNN backbone {backbone!r}")
    anchors = AnchorGenerator(sizes, (ASPECT_RATIOS,) * len(sizes))
    options = {"box_detections_per_img": 300, "box_score_thresh": 0.01, **options}
    model = FasterRCNN(features, num_classes=2, rpn_anchor_generator=anchors, box_roi_pool=pool, **options)
    model.transform = NoResizeTransform(
        800, 1333, image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225], size_divisible=32
    )
    return model


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """A Faster R-CNN state dict (fp32) from a file the training export wrote (fp16 or fp32)."""
    if not path.is_file():
        raise FileNotFoundError(f"weights {path} not found")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds no Faster R-CNN state dict")
    return {key: value.float() if value.is_floating_point() else value for key, value in state.items()}
