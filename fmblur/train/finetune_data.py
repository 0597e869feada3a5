"""Training data for fine-tuning the pretrained face detectors on what they miss: masked, dark and tiny faces.

Each sample is a square crop with face boxes and five landmarks per face:
- landmarks come from the base detector itself (a teacher pass over each training photo, cached), because
  neither data set annotates them; faces the teacher does not find keep their box but no landmark target;
- synthetic face masks (surgical and cloth shapes, MaskTheFace-style) are drawn from those landmarks on faces
  that wear none, so the detector sees masked faces in WIDER's crowds and poses;
- low light (gamma, lowered contrast), colour casts, sensor noise and JPEG quality 20-60;
- scale: zoom-out crops shrink faces down to a few pixels, zoom-in crops enlarge them, so small faces are
  seen at the sizes where the pretrained models lose them.
Boxes the detector should not be taught either way (WIDER's invalid faces, faces under `min_face` px after
augmentation) are painted over with the photo's mean colour.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from fmblur.datasets import AnnotatedImage
from fmblur.geometry import match_detections
from fmblur.image_io import read_image
from fmblur.train.augment import Photometric
from fmblur.train.detector_data import paint_over

# Labels of the face-mask data set for faces that already wear a mask (no synthetic one is drawn on them).
MASKED_LABELS = ("with_mask", "mask_weared_incorrect")
# Mirroring swaps the image-left and image-right points (eyes, mouth corners).
MIRROR_ORDER = [1, 0, 2, 4, 3]
# A teacher detection is the landmark source of a ground-truth face when their boxes overlap this much.
TEACHER_IOU = 0.5
# Common mask colours (RGB): surgical blue-green, white, black, grey; cloth masks get a random colour.
MASK_COLOURS = ((150, 190, 215), (120, 170, 200), (235, 235, 235), (30, 30, 35), (110, 110, 115))


@dataclass(frozen=True)
class FinetuneAugment:
    size: int = 640  # training crops are size x size
    min_face: float = 6.0  # px after augmentation; smaller faces are painted over
    mask_p: float = 0.5  # chance of a synthetic mask on an unmasked face with landmarks
    low_light_p: float = 0.3  # chance of darkening, lowered contrast, a colour cast and sensor noise
    jpeg_p: float = 0.3  # chance of JPEG quality 20-60
    zoom_out_p: float = 0.5  # chance of shrinking the photo onto the crop (small faces), else a zoom-in crop
    flip_p: float = 0.5


@dataclass
class FaceSample:
    """An augmented training image (RGB uint8, size x size) with its faces."""

    image: np.ndarray
    boxes: np.ndarray  # (N, 4) x1, y1, x2, y2
    landmarks: np.ndarray  # (N, 5, 2)
    has_landmarks: np.ndarray  # (N,) bool


def teacher_landmarks(
    records: list[AnnotatedImage], detect: Callable[[np.ndarray], list], cache: Path, progress=None
) -> list[np.ndarray]:
    """Per record, (N, 5, 2) landmarks for its N boxes (NaN where the teacher found no matching face).

    `detect` maps an RGB image to a list of `Face`. The result is cached in `cache` (an .npz keyed by path)."""
    known: dict[str, np.ndarray] = {}
    if cache.is_file():
        with np.load(cache) as stored:
            known = {key: stored[key] for key in stored.files}
    changed = False
    result = []
    for record in records:
        key = str(record.path)
        if key not in known or len(known[key]) != len(record.boxes):
            points = np.full((len(record.boxes), 5, 2), np.nan, np.float32)
            faces = [f for f in detect(read_image(record.path)[0]) if f.landmarks is not None]
            if faces and len(record.boxes):
                detected = np.array([f.box for f in faces], np.float64)
                matched = match_detections(record.boxes, detected, np.array([f.score for f in faces]), TEACHER_IOU)
                for row in np.flatnonzero(matched >= 0):
                    points[row] = np.array(list(faces[matched[row]].landmarks.values()), np.float32)
            known[key] = points
            changed = True
        result.append(known[key])
        if progress is not None:
            progress()
    if changed:
        cache.parent.mkdir(parents=True, exist_ok=True)
        temporary = cache.with_suffix(".tmp.npz")
        np.savez_compressed(temporary, **known)
        temporary.replace(cache)
    return result


def draw_mask(image: np.ndarray, box: np.ndarray, points: np.ndarray, rng: np.random.Generator) -> None:
    """Draw a face mask (in place) over the nose, mouth and chin of a face given its box and 5 landmarks.

    The outline follows MaskTheFace's idea with what five points allow: the top edge crosses the nose
    between the eyes and the nose tip, the sides reach the cheeks at the box's edges, the bottom follows
    the chin at the box's lower edge."""
    x1, y1, x2, y2 = box
    left_eye, right_eye, nose, mouth_left, mouth_right = points
    width, height = x2 - x1, y2 - y1
    eye_y = (left_eye[1] + right_eye[1]) / 2
    top = eye_y + rng.uniform(0.35, 0.6) * (nose[1] - eye_y)
    bottom = min(y2 + 0.02 * height, image.shape[0] - 1)
    cheek_left, cheek_right = x1 + rng.uniform(0.0, 0.08) * width, x2 - rng.uniform(0.0, 0.08) * width
    mouth_y = (mouth_left[1] + mouth_right[1]) / 2
    outline = np.array(
        [
            (cheek_left, top + 0.08 * height),
            (nose[0], top),
            (cheek_right, top + 0.08 * height),
            (cheek_right, mouth_y),
            (x2 - 0.25 * width, bottom - 0.05 * height),
            (nose[0], bottom),
            (x1 + 0.25 * width, bottom - 0.05 * height),
            (cheek_left, mouth_y),
        ],
        np.float32,
    )
    if rng.random() < 0.6:
        colour = np.array(MASK_COLOURS[rng.integers(len(MASK_COLOURS))], np.float32)
    else:
        colour = rng.uniform(20, 235, 3).astype(np.float32)
    # Work on the mask's own rectangle only: a photo may hold dozens of faces.
    left, top_px = np.floor(outline.min(axis=0)).astype(int).clip(0)
    right, bottom_px = np.ceil(outline.max(axis=0)).astype(int) + 2
    region = image[top_px:bottom_px, left:right]
    if region.size == 0:
        return
    layer = np.zeros(region.shape[:2], np.uint8)
    cv2.fillPoly(layer, [np.round(outline - [left, top_px]).astype(np.int32)], 255)
    inside = layer > 0
    if not inside.any():
        return
    # Shade the mask with the face's own lighting so a dark photo gets a dark mask.
    brightness = region[inside].mean() / 128.0
    shaded = np.clip(colour * np.clip(brightness, 0.3, 1.3), 0, 255)
    alpha = cv2.GaussianBlur(layer, (3, 3), 0).astype(np.float32)[..., None] / 255.0
    noise = rng.normal(0, 6, region.shape).astype(np.float32)
    region[:] = np.clip(region * (1 - alpha) + (shaded + noise) * alpha, 0, 255).astype(np.uint8)


def build_geometry(config: FinetuneAugment):
    """Zoom-out (the photo shrunk onto a padded square: small faces) or zoom-in (a random crop enlarged),
    moving boxes and landmarks along; a face keeps its box while 40 % of it stays in the picture."""
    import albumentations as A

    size = config.size
    zoom_out = A.Sequential(
        [
            A.LongestMaxSize(max_size=[size // 4, size // 3, size // 2, (2 * size) // 3, size]),
            A.PadIfNeeded(min_height=size, min_width=size, position="random", fill=0),
        ],
        p=config.zoom_out_p,
    )
    zoom_in = A.RandomResizedCrop(size=(size, size), scale=(0.08, 1.0), ratio=(0.75, 1.333), p=1 - config.zoom_out_p)
    return A.Compose(
        [A.OneOf([zoom_out, zoom_in], p=1.0), A.Resize(size, size)],  # Resize: a no-op unless rounding is off by 1 px
        bbox_params=A.BboxParams(format="pascal_voc", label_fields=["face_index"], min_visibility=0.4, clip=True),
        keypoint_params=A.KeypointParams(format="xy", label_fields=["point_face"], remove_invisible=False),
    )


def build_photometric(config: FinetuneAugment):
    import albumentations as A

    low_light = A.Compose(
        [
            A.RandomGamma(gamma_limit=(160, 350), p=1.0),  # gamma > 1 darkens
            A.RandomBrightnessContrast(brightness_limit=(-0.3, 0.0), contrast_limit=(-0.6, -0.1), p=0.7),
            A.RGBShift(r_shift_limit=20, g_shift_limit=20, b_shift_limit=20, p=0.5),
            A.GaussNoise(std_range=(0.02, 0.08), p=0.5),
        ],
        p=config.low_light_p,
    )
    return A.Compose(
        [
            *Photometric().transforms(),
            low_light,
            A.ToGray(p=0.05),
            A.ImageCompression(quality_range=(20, 60), p=config.jpeg_p),
        ]
    )


class FinetuneDataset(torch.utils.data.Dataset):
    """Augmented `FaceSample`s of annotated photos; `landmarks[i]` is (N_i, 5, 2) for record i (NaN = unknown).

    `to_input` turns a sample's RGB image into the network's input tensor (each base model has its own)."""

    def __init__(
        self,
        records: list[AnnotatedImage],
        landmarks: list[np.ndarray],
        config: FinetuneAugment,
        to_input: Callable[[np.ndarray], torch.Tensor],
        seed: int = 0,
    ) -> None:
        if len(records) != len(landmarks):
            raise ValueError("one landmark array per record is needed")
        self.records = records
        self.landmarks = landmarks
        self.config = config
        self.to_input = to_input
        self.seed = seed
        self.epoch = 0
        self.geometry = build_geometry(config)
        self.photometric = build_photometric(config)

    def __len__(self) -> int:
        return len(self.records)

    def sample(self, index: int) -> FaceSample:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        # albumentations draws from its own generators: seeded from this sample's, so a sample is the same whoever
        # asks for it (a resumed run, a test) and runs differ only when their seeds do.
        self.geometry.set_random_seed(int(rng.integers(2**31)))
        self.photometric.set_random_seed(int(rng.integers(2**31)))
        record = self.records[index]
        image = np.array(read_image(record.path)[0])  # a writable copy: masks are drawn on it
        height, width = image.shape[:2]
        boxes = record.boxes.astype(np.float32).copy()
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
        points = self.landmarks[index].astype(np.float32).copy()
        known = np.isfinite(points).all(axis=(1, 2))
        labels = record.labels if len(record.labels) == len(boxes) else ["face"] * len(boxes)
        ignore = record.ignore | ((boxes[:, 2] - boxes[:, 0]) < 1) | ((boxes[:, 3] - boxes[:, 1]) < 1)
        for i in np.flatnonzero(known & ~ignore):
            short = min(boxes[i, 2] - boxes[i, 0], boxes[i, 3] - boxes[i, 1])
            if labels[i] not in MASKED_LABELS and short >= 10 and rng.random() < self.config.mask_p:
                draw_mask(image, boxes[i], points[i], rng)
        paint_over(image, boxes[ignore])
        faces = np.flatnonzero(~ignore)
        # albumentations keeps every keypoint (remove_invisible=False): five per face, in face order.
        keypoints = np.nan_to_num(points[faces].reshape(-1, 2), nan=-1.0)
        result = self.geometry(
            image=image,
            bboxes=boxes[faces],
            face_index=faces,
            keypoints=keypoints,
            point_face=np.repeat(faces, 5),
        )
        image = np.ascontiguousarray(self.photometric(image=result["image"])["image"])
        kept = np.asarray(result["face_index"], np.int64)
        boxes = np.asarray(result["bboxes"], np.float32).reshape(-1, 4)
        moved = np.asarray(result["keypoints"], np.float32)[:, :2].reshape(-1, 5, 2)
        order = {face: position for position, face in enumerate(faces)}
        points = moved[[order[face] for face in kept]].reshape(-1, 5, 2)
        has_points = known[kept]
        if rng.random() < self.config.flip_p:
            image = np.ascontiguousarray(image[:, ::-1])
            size = image.shape[1]
            boxes[:, [0, 2]] = size - boxes[:, [2, 0]]
            points = points[:, MIRROR_ORDER]
            points[..., 0] = size - points[..., 0]
        small = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) < self.config.min_face
        paint_over(image, boxes[small])
        return FaceSample(image=image, boxes=boxes[~small], landmarks=points[~small], has_landmarks=has_points[~small])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        sample = self.sample(index)
        target = {
            "boxes": torch.from_numpy(sample.boxes),
            "landmarks": torch.from_numpy(sample.landmarks.astype(np.float32)),
            "has_landmarks": torch.from_numpy(sample.has_landmarks),
        }
        return self.to_input(sample.image), target


def collate(batch: list) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    images, targets = zip(*batch, strict=False)
    return torch.stack(images), list(targets)
