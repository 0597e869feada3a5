"""Training data for the Faster R-CNN detectors: annotated photos -> augmented tensors and targets.

Augmentation reproduces the dissertation's albumentations listing (motion blur, blur, brightness/contrast,
colour jitter, gamma, fog, downscale, longest-max-size over several sizes, pad) plus horizontal flip, and
adds native-scale random crops so the small faces of large WIDER photos are not shrunk away.
Faces the detector should not be taught either way (WIDER's invalid boxes, faces smaller than `min_face`
after augmentation, faces a crop cut to less than `min_visible` of themselves) are painted over with the
photo's mean colour: neither a face nor background. A face cut by a crop but kept as a face teaches the
network to box part of a face (the upper half of a large face beside the whole one); one dropped teaches it
that part of a face is background.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fmblur.datasets import AnnotatedImage
from fmblur.image_io import read_image
from fmblur.train.augment import Photometric

FACE, IGNORE = 1, 0


@dataclass(frozen=True)
class AugmentConfig:
    sizes: tuple[int, ...] = (320, 384, 448)  # longest side after resizing, one chosen per sample
    # Native-scale crop side (the other half of the samples). Sizes above it are cropped to it after resizing:
    # the registry enlarges small photos to 1280 px, so large faces must be seen large without whole 1280-px
    # photos in every batch.
    crop: int = 448
    min_face: float = 8.0  # px, shorter side after augmentation; smaller faces are painted over
    # Share of a face that must stay inside a crop for it to stay a face; less is painted over.
    min_visible: float = 0.4
    # Share of the crops of resized photos that are placed to keep one face (chosen at random) whole: random
    # crops of a photo enlarged to 1280 px cut most large faces, so a large face is rarely seen whole and large.
    whole_face_p: float = 0.0
    enabled: bool = True

    def __post_init__(self) -> None:
        if not 0.0 < self.min_visible <= 1.0:
            raise ValueError(f"min_visible must be in (0, 1], got {self.min_visible}")
        if not 0.0 <= self.whole_face_p <= 1.0:
            raise ValueError(f"whole_face_p must be in [0, 1], got {self.whole_face_p}")


def build_augmentation(config: AugmentConfig):
    import albumentations as A

    size = max(config.sizes)
    crop_resized = [A.RandomCrop(config.crop, config.crop, pad_if_needed=True, fill=0, p=1.0 - config.whole_face_p)]
    if config.whole_face_p > 0:
        whole_face = A.Sequential(
            [
                A.PadIfNeeded(min_height=config.crop, min_width=config.crop, fill=0),
                A.AtLeastOneBBoxRandomCrop(config.crop, config.crop, erosion_factor=0.0),
            ],
            p=config.whole_face_p,
        )
        crop_resized = [A.OneOf([*crop_resized, whole_face], p=1.0)]
    geometry = [
        A.OneOf(
            [
                A.OneOf([A.LongestMaxSize(max_size=s) for s in config.sizes], p=1.0),
                A.RandomCrop(config.crop, config.crop, pad_if_needed=True, fill=0, p=1.0),
            ],
            p=1.0,
        ),
        *(crop_resized if size > config.crop else []),
        A.PadIfNeeded(min_height=min(*config.sizes, config.crop), min_width=min(*config.sizes, config.crop), fill=0),
        A.HorizontalFlip(p=0.5),
    ]
    colour = Photometric().transforms()
    if not config.enabled:
        geometry, colour = [A.LongestMaxSize(max_size=size)], []
    # Boxes are clipped to the crop and none is dropped; each box's two corners travel as keypoints that may
    # leave the picture, so the share of the face left inside is known afterwards (`visible_share`).
    return A.Compose(
        geometry + colour,
        bbox_params=A.BboxParams(format="pascal_voc", label_fields=["kinds", "box_ids"], min_visibility=0.0, clip=True),
        keypoint_params=A.KeypointParams(format="xy", label_fields=["corner_ids"], remove_invisible=False),
    )


def visible_share(boxes: np.ndarray, box_ids: np.ndarray, corners: np.ndarray, corner_ids: np.ndarray) -> np.ndarray:
    """Per clipped box, its area over the area of the whole face it came from (its two transformed corners)."""
    shares = np.ones(len(boxes), np.float64)
    for row, box_id in enumerate(box_ids):
        points = corners[corner_ids == box_id]
        whole = np.prod(points.max(axis=0) - points.min(axis=0))
        clipped = (boxes[row, 2] - boxes[row, 0]) * (boxes[row, 3] - boxes[row, 1])
        shares[row] = clipped / whole if whole > 0 else 0.0
    return shares


def paint_over(image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Fill `boxes` with the image's mean colour (in place) and return the image."""
    if len(boxes):
        colour = image.reshape(-1, 3).mean(axis=0).astype(image.dtype)
        height, width = image.shape[:2]
        for x1, y1, x2, y2 in boxes:
            left, top = int(max(0, np.floor(x1))), int(max(0, np.floor(y1)))
            right, bottom = int(min(width, np.ceil(x2))), int(min(height, np.ceil(y2)))
            image[top:bottom, left:right] = colour
    return image


class FaceDetectionDataset(torch.utils.data.Dataset):
    """(image tensor CHW float 0..1, {"boxes": (N, 4), "labels": (N,) of 1}) per photo."""

    def __init__(self, records: list[AnnotatedImage], config: AugmentConfig) -> None:
        self.records = records
        self.config = config
        self.transform = build_augmentation(config)

    def __len__(self) -> int:
        return len(self.records)

    def sample(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The augmented RGB image and its face boxes (float32 (N, 4))."""
        record = self.records[index]
        image = read_image(record.path)[0]
        height, width = image.shape[:2]
        boxes = record.boxes.copy()
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
        valid = (boxes[:, 2] - boxes[:, 0] >= 1) & (boxes[:, 3] - boxes[:, 1] >= 1)
        kinds = np.where(record.ignore, IGNORE, FACE)[valid]
        boxes = boxes[valid]
        ids = np.arange(len(boxes))
        result = self.transform(
            image=image,
            bboxes=boxes,
            kinds=kinds,
            box_ids=ids,
            keypoints=boxes.reshape(-1, 2),
            corner_ids=np.repeat(ids, 2),
        )
        image = np.ascontiguousarray(result["image"])
        boxes = np.asarray(result["bboxes"], np.float32).reshape(-1, 4)
        kinds = np.asarray(result["kinds"], np.int64)
        cut = (
            visible_share(
                boxes,
                np.asarray(result["box_ids"], np.int64),
                np.asarray(result["keypoints"], np.float64).reshape(-1, 2),
                np.asarray(result["corner_ids"], np.int64),
            )
            # Clipping goes through normalised coordinates: a whole enlarged face can come back a hair short of 1.
            < self.config.min_visible - 1e-3
        )
        small = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) < self.config.min_face
        ignored = (kinds == IGNORE) | small | cut
        paint_over(image, boxes[ignored])
        return image, boxes[~ignored]

    def __getitem__(self, index: int):
        image, boxes = self.sample(index)
        tensor = torch.from_numpy(image).permute(2, 0, 1).float().div_(255)
        target = {"boxes": torch.from_numpy(boxes), "labels": torch.ones(len(boxes), dtype=torch.int64)}
        return tensor, target


def collate(batch):
    return tuple(zip(*batch, strict=False))
