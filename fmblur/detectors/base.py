"""What every face detector shares: input checks, detection scale, threshold, mapping boxes back."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import cv2
import numpy as np

from fmblur.face import Face, landmarks_from_array
from fmblur.geometry import nms

# Auto-upscaling stops here: a thumbnail enlarged further only shows blur to the network.
_MAX_AUTO_UPSCALE = 4.0


class DetectorUnavailable(RuntimeError):
    """The detector's package or weights are not installed on this machine."""


@dataclass
class RawDetections:
    """Detections in the pixel frame of the array the model saw."""

    boxes: np.ndarray  # (N, 4) x1, y1, x2, y2
    scores: np.ndarray  # (N,)
    landmarks: np.ndarray | None = None  # (N, 5, 2) in LANDMARK_NAMES order, or None

    @staticmethod
    def empty(with_landmarks: bool) -> RawDetections:
        return RawDetections(
            boxes=np.zeros((0, 4), np.float32),
            scores=np.zeros((0,), np.float32),
            landmarks=np.zeros((0, 5, 2), np.float32) if with_landmarks else None,
        )


# Mirroring an image swaps which eye (and mouth corner) is on the image's left.
_MIRROR_ORDER = [1, 0, 2, 4, 3]
# Views of one detector (scales, mirror, tiles) are merged by NMS at this IoU.
_VIEW_MERGE_IOU = 0.5


def mirrored(raw: RawDetections, width: int) -> RawDetections:
    """Detections made on the mirrored image, in the original image's pixels."""
    boxes = raw.boxes.copy()
    boxes[:, [0, 2]] = width - raw.boxes[:, [2, 0]]
    landmarks = None
    if raw.landmarks is not None:
        landmarks = raw.landmarks[:, _MIRROR_ORDER].copy()
        landmarks[..., 0] = width - landmarks[..., 0]
    return RawDetections(boxes=boxes, scores=raw.scores, landmarks=landmarks)


def merge_views(views: list[RawDetections], with_landmarks: bool) -> RawDetections:
    """One detection per face across views: NMS keeps the highest-scoring box of each overlapping group."""
    if len(views) == 1:
        return views[0]
    boxes = np.concatenate([v.boxes.reshape(-1, 4) for v in views])
    scores = np.concatenate([v.scores.reshape(-1) for v in views])
    landmarks = None
    if with_landmarks and all(v.landmarks is not None for v in views):
        landmarks = np.concatenate([v.landmarks.reshape(-1, 5, 2) for v in views])
    keep = nms(boxes, scores, _VIEW_MERGE_IOU)
    return RawDetections(
        boxes=boxes[keep], scores=scores[keep], landmarks=None if landmarks is None else landmarks[keep]
    )


def _tile_starts(length: int, size: int, step: int) -> list[int]:
    starts = list(range(0, max(1, length - size + 1), step))
    if starts[-1] + size < length:
        starts.append(length - size)  # the last tile ends on the border
    return starts


def as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """Check a detector input and bring grey or RGBA arrays to RGB; anything else is a clear error."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"expected an RGB image as a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise TypeError(f"expected a uint8 image, got dtype {image.dtype}")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_RGBA2RGB)
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    raise ValueError(f"expected an image of shape (H, W, 3), got {image.shape}")


class Detector(ABC):
    """A face detector. Subclasses implement `_load` (called once, lazily) and `_detect`.

    threshold: faces scoring below it are dropped.
    scale: the model sees a copy resized by this factor (above 1 finds smaller faces, below 1 is faster);
        boxes are mapped back to the input's pixels.
    upscale_to: a copy whose longer side is below this is enlarged to it (0 disables): faces in small
        photos are often under 20 px, below what these networks find reliably. Measured on the face-mask
        training images (~400 px wide): RetinaFace recall at IoU 0.5 goes from 0.62 at 1x to 0.81 at 800 px.
    max_side: the resized copy's longest side is capped here, so a huge photo never becomes a huge tensor.
    extra_scales: more passes at these scales (multi-scale inference), merged with the first.
    flip: also detect on the mirrored image (test-time augmentation).
    tile: also detect on overlapping tiles of this many pixels (0 = off), for small faces in large frames.
    tile_overlap: share of a tile that overlaps its neighbour.
    """

    name: str = ""
    has_landmarks: bool = False
    default_threshold: float = 0.5
    # Networks with strided feature pyramids need input sides that are multiples of this;
    # the copy is padded at the bottom/right, which leaves coordinates unchanged.
    pad_multiple: int = 32
    # Tiny inputs (a 1x1 upload) are padded up to this so every network has at least one feature cell.
    min_input_side: int = 32

    def __init__(
        self,
        threshold: float | None = None,
        scale: float = 1.0,
        upscale_to: int = 800,
        max_side: int = 2048,
        extra_scales: tuple[float, ...] = (),
        flip: bool = False,
        tile: int = 0,
        tile_overlap: float = 0.25,
    ) -> None:
        if threshold is None:
            threshold = self.default_threshold
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold}")
        if scale <= 0:
            raise ValueError(f"scale must be positive, got {scale}")
        if max_side < 32:
            raise ValueError(f"max_side must be at least 32, got {max_side}")
        if not 0 <= upscale_to <= max_side:
            raise ValueError(f"upscale_to must be in [0, max_side={max_side}], got {upscale_to}")
        self.threshold = float(threshold)
        self.scale = float(scale)
        if any(extra <= 0 for extra in extra_scales):
            raise ValueError(f"extra_scales must be positive, got {extra_scales}")
        if tile and tile < 64:
            raise ValueError(f"tile must be 0 (off) or at least 64 pixels, got {tile}")
        if not 0.0 <= tile_overlap < 0.9:
            raise ValueError(f"tile_overlap must be in [0, 0.9), got {tile_overlap}")
        self.upscale_to = int(upscale_to)
        self.max_side = int(max_side)
        self.extra_scales = tuple(float(v) for v in extra_scales)
        self.flip = bool(flip)
        self.tile = int(tile)
        self.tile_overlap = float(tile_overlap)
        self._loaded = False

    @classmethod
    def available(cls) -> bool:
        """False when this detector's weights are not on this machine (a project model not trained yet)."""
        return True

    @classmethod
    def training_command(cls) -> str:
        """For a project model: the command that trains its weights ("" for pretrained detectors)."""
        return ""

    @classmethod
    def menu_label(cls) -> str:
        """How menus name this detector (the project's models add what they measured)."""
        return cls.name

    def runtime(self) -> str:
        """What runs the loaded model, as it actually ran (e.g. "onnxruntime CUDAExecutionProvider", "torch cpu")."""
        return "not loaded"

    @abstractmethod
    def _load(self) -> None:
        """Load the model. Raise DetectorUnavailable when its package or weights are missing."""

    @abstractmethod
    def _detect(self, image: np.ndarray, threshold: float) -> RawDetections:
        """Detect on an RGB uint8 array whose sides are multiples of `pad_multiple`."""

    def load(self) -> Detector:
        if not self._loaded:
            self._load()
            self._loaded = True
        return self

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in `image` (RGB uint8, any size), highest score first, boxes clipped to the image."""
        image = as_rgb_uint8(image)
        height, width = image.shape[:2]
        if height == 0 or width == 0:
            raise ValueError(f"empty image of shape {image.shape}")
        self.load()
        raw = self.detect_raw(image)
        faces = []
        for i in np.argsort(-raw.scores):
            score = float(raw.scores[i])
            if score < self.threshold:
                continue
            landmarks = None
            if raw.landmarks is not None and np.isfinite(raw.landmarks[i]).all():
                landmarks = landmarks_from_array(raw.landmarks[i])
            box = tuple(float(v) for v in raw.boxes[i])
            face = Face(box=box, score=score, landmarks=landmarks).clipped(width, height)  # type: ignore[arg-type]
            if face.width > 1 and face.height > 1:
                faces.append(face)
        return faces

    def detect_raw(self, image: np.ndarray) -> RawDetections:
        """All views this detector is set to look at (full frame, extra scales, mirror, tiles), merged,
        in the image's pixels and before the threshold."""
        self.load()
        views = [self._detect_view(image, self.scale)]
        for extra in self.extra_scales:
            views.append(self._detect_view(image, extra))
        if self.flip:
            views.append(mirrored(self._detect_view(np.ascontiguousarray(image[:, ::-1]), self.scale), image.shape[1]))
        if self.tile:
            views.extend(self._detect_tiles(image))
        return merge_views(views, self.has_landmarks)

    def _detect_view(self, image: np.ndarray, scale: float) -> RawDetections:
        """One pass of the model on a copy resized by `scale` (or enlarged to `upscale_to`), mapped back."""
        height, width = image.shape[:2]
        longer = max(height, width)
        factor = max(scale, min(self.upscale_to / longer, _MAX_AUTO_UPSCALE))
        factor = min(factor, self.max_side / longer)
        new_width, new_height = max(1, round(width * factor)), max(1, round(height * factor))
        if (new_width, new_height) != (width, height):
            interpolation = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
            work = cv2.resize(image, (new_width, new_height), interpolation=interpolation)
        else:
            work = image
        raw = self._detect(self._pad(work), self.threshold)
        # Map back with the exact per-axis factor of the resized copy (rounding makes it differ from `factor`).
        fx, fy = width / new_width, height / new_height
        boxes = np.asarray(raw.boxes, np.float64).reshape(-1, 4) * [fx, fy, fx, fy]
        landmarks = (
            None if raw.landmarks is None else np.asarray(raw.landmarks, np.float64).reshape(-1, 5, 2) * [fx, fy]
        )
        return RawDetections(boxes=boxes, scores=np.asarray(raw.scores, np.float64).reshape(-1), landmarks=landmarks)

    def _detect_tiles(self, image: np.ndarray) -> list[RawDetections]:
        """Overlapping tiles of `tile` pixels, each detected like a small image (so enlarged to `upscale_to`):
        faces of 10-20 px in a 1080p frame become large enough for the network. A detection touching a tile
        edge inside the image is dropped: the neighbouring tile (or the full-frame pass) sees that face whole."""
        height, width = image.shape[:2]
        size = self.tile
        if max(height, width) <= size:
            return []
        step = max(1, int(size * (1 - self.tile_overlap)))
        views = []
        for top in _tile_starts(height, size, step):
            for left in _tile_starts(width, size, step):
                crop = image[top : top + size, left : left + size]
                raw = self._detect_view(crop, self.scale)
                inner_edges = (
                    (raw.boxes[:, 0] <= 1) & (left > 0)
                    | (raw.boxes[:, 1] <= 1) & (top > 0)
                    | (raw.boxes[:, 2] >= crop.shape[1] - 1) & (left + size < width)
                    | (raw.boxes[:, 3] >= crop.shape[0] - 1) & (top + size < height)
                )
                keep = ~inner_edges
                landmarks = None if raw.landmarks is None else raw.landmarks[keep] + [left, top]
                views.append(
                    RawDetections(
                        boxes=raw.boxes[keep] + [left, top, left, top], scores=raw.scores[keep], landmarks=landmarks
                    )
                )
        return views

    def _pad(self, image: np.ndarray) -> np.ndarray:
        multiple, min_side = self.pad_multiple, self.min_input_side
        height, width = image.shape[:2]
        pad_h = max(min_side, -(-height // multiple) * multiple) - height
        pad_w = max(min_side, -(-width // multiple) * multiple) - width
        if pad_h == 0 and pad_w == 0:
            return image
        return cv2.copyMakeBorder(image, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT, value=(0, 0, 0))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(threshold={self.threshold}, scale={self.scale}, upscale_to={self.upscale_to}, "
            f"flip={self.flip}, tile={self.tile})"
        )
