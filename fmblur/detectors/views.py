"""Test-time views around any single-pass detector: a resized copy, more scales, the mirror image, tiles.

In the spirit of supervision's `InferenceSlicer`: the wrapper knows nothing of the model; it calls a function
that detects on one array and returns boxes in that array's pixels, and it maps every view back to the
image's pixels and merges them by NMS.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from fmblur.detectors.records import RawDetections
from fmblur.geometry import nms, suppress_nested

# Auto-upscaling stops here: a thumbnail enlarged further only shows blur to the network.
_MAX_AUTO_UPSCALE = 4.0
# Mirroring an image swaps which eye (and mouth corner) is on the image's left.
_MIRROR_ORDER = [1, 0, 2, 4, 3]
# Views of one detector (scales, mirror, tiles) are merged by NMS at this IoU.
_VIEW_MERGE_IOU = 0.5


@dataclass(frozen=True)
class ViewOptions:
    """How a detector looks at an image.

    scale: the model sees a copy resized by this factor (above 1 finds smaller faces, below 1 is faster);
        boxes are mapped back to the input's pixels.
    upscale_to: a copy whose longer side is below this is enlarged to it (0 disables): faces in small
        photos are often under 20 px, below what these networks find reliably. Measured on the face-mask
        training images (~400 px wide): RetinaFace recall at IoU 0.5 goes from 0.62 at 1x to 0.81 at 800 px.
    max_side: the resized copy's longest side is capped here, so a huge photo never becomes a huge tensor.
    extra_scales: more passes at these scales (multi-scale inference), merged with the first.
    extra_sides: more passes on copies whose longer side is exactly this many pixels (never auto-enlarged):
        a detector enlarged for small faces can still see the large ones at a size it was trained on.
    flip: also detect on the mirrored image.
    tile: also detect on overlapping tiles of this many pixels (0 = off), for small faces in large frames.
    tile_overlap: share of a tile that overlaps its neighbour.
    nested_share: after merging, a box of which at least this share lies inside a higher-scoring box goes
        (0 = off): for detectors that box part of a face beside the face (fitted per Faster R-CNN variant).
    """

    scale: float = 1.0
    upscale_to: int = 800
    max_side: int = 2048
    extra_scales: tuple[float, ...] = ()
    extra_sides: tuple[int, ...] = ()
    flip: bool = False
    tile: int = 0
    tile_overlap: float = 0.25
    nested_share: float = 0.0

    def __post_init__(self) -> None:
        if self.scale <= 0:
            raise ValueError(f"scale must be positive, got {self.scale}")
        if self.max_side < 32:
            raise ValueError(f"max_side must be at least 32, got {self.max_side}")
        if not 0 <= self.upscale_to <= self.max_side:
            raise ValueError(f"upscale_to must be in [0, max_side={self.max_side}], got {self.upscale_to}")
        if any(extra <= 0 for extra in self.extra_scales):
            raise ValueError(f"extra_scales must be positive, got {self.extra_scales}")
        if any(not 32 <= side <= self.max_side for side in self.extra_sides):
            raise ValueError(f"extra_sides must be in [32, max_side={self.max_side}], got {self.extra_sides}")
        if self.tile and self.tile < 64:
            raise ValueError(f"tile must be 0 (off) or at least 64 pixels, got {self.tile}")
        if not 0.0 <= self.tile_overlap < 0.9:
            raise ValueError(f"tile_overlap must be in [0, 0.9), got {self.tile_overlap}")
        if not 0.0 <= self.nested_share <= 1.0:
            raise ValueError(f"nested_share must be in [0, 1] (0 = off), got {self.nested_share}")


def mirrored(raw: RawDetections, width: int) -> RawDetections:
    """Detections made on the mirrored image, in the original image's pixels."""
    boxes = raw.boxes.copy()
    boxes[:, [0, 2]] = width - raw.boxes[:, [2, 0]]
    landmarks = None
    if raw.landmarks is not None:
        landmarks = raw.landmarks[:, _MIRROR_ORDER].copy()
        landmarks[..., 0] = width - landmarks[..., 0]
    return RawDetections(boxes=boxes, scores=raw.scores, landmarks=landmarks)


def shifted(raw: RawDetections, left: int, top: int) -> RawDetections:
    """Detections made on a crop whose top-left corner is (left, top), in the full image's pixels."""
    offset = np.array([left, top], np.float64)
    landmarks = None if raw.landmarks is None else raw.landmarks + offset
    return RawDetections(boxes=raw.boxes + np.tile(offset, 2), scores=raw.scores, landmarks=landmarks)


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


def without_nested(raw: RawDetections, share: float) -> RawDetections:
    """`raw` less the boxes of which `share` lies inside a higher-scoring box (0: all of them)."""
    if not share or len(raw.scores) < 2:
        return raw
    keep = suppress_nested(raw.boxes, raw.scores, share)
    return RawDetections(
        boxes=raw.boxes[keep], scores=raw.scores[keep], landmarks=None if raw.landmarks is None else raw.landmarks[keep]
    )


def _tile_starts(length: int, size: int, step: int) -> list[int]:
    starts = list(range(0, max(1, length - size + 1), step))
    if starts[-1] + size < length:
        starts.append(length - size)  # the last tile ends on the border
    return starts


class TestTimeViews:
    """Runs `one_pass` (an RGB array of any size -> detections in its pixels) on every view of an image."""

    __test__ = False  # a library class, not a pytest test class

    def __init__(
        self, one_pass: Callable[[np.ndarray], RawDetections], options: ViewOptions, with_landmarks: bool
    ) -> None:
        self.one_pass = one_pass
        self.options = options
        self.with_landmarks = with_landmarks

    def __call__(self, image: np.ndarray) -> RawDetections:
        """All views (full frame, extra scales, mirror, tiles) merged, in the image's pixels."""
        options = self.options
        views = [self.resized_pass(image, options.scale)]
        views.extend(self.resized_pass(image, extra) for extra in options.extra_scales)
        views.extend(self.side_pass(image, side) for side in options.extra_sides)
        if options.flip:
            flipped = self.resized_pass(np.ascontiguousarray(image[:, ::-1]), options.scale)
            views.append(mirrored(flipped, image.shape[1]))
        if options.tile:
            views.extend(self.tiles(image))
        return without_nested(merge_views(views, self.with_landmarks), options.nested_share)

    def side_pass(self, image: np.ndarray, side: int) -> RawDetections:
        """One pass on a copy whose longer side is `side` pixels, mapped back."""
        return self.resized_pass(image, side / max(image.shape[:2]), enlarge=False)

    def resized_pass(self, image: np.ndarray, scale: float, enlarge: bool = True) -> RawDetections:
        """One pass on a copy resized by `scale` (or, when `enlarge`, enlarged to `upscale_to`), mapped back."""
        options = self.options
        height, width = image.shape[:2]
        longer = max(height, width)
        factor = max(scale, min(options.upscale_to / longer, _MAX_AUTO_UPSCALE)) if enlarge else scale
        factor = min(factor, options.max_side / longer)
        new_width, new_height = max(1, round(width * factor)), max(1, round(height * factor))
        if (new_width, new_height) != (width, height):
            interpolation = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
            work = cv2.resize(image, (new_width, new_height), interpolation=interpolation)
        else:
            work = image
        raw = self.one_pass(work)
        # Map back with the exact per-axis factor of the resized copy (rounding makes it differ from `factor`).
        fx, fy = width / new_width, height / new_height
        boxes = np.asarray(raw.boxes, np.float64).reshape(-1, 4) * [fx, fy, fx, fy]
        landmarks = (
            None if raw.landmarks is None else np.asarray(raw.landmarks, np.float64).reshape(-1, 5, 2) * [fx, fy]
        )
        return RawDetections(boxes=boxes, scores=np.asarray(raw.scores, np.float64).reshape(-1), landmarks=landmarks)

    def tiles(self, image: np.ndarray) -> list[RawDetections]:
        """Overlapping tiles of `tile` pixels, each detected like a small image (so enlarged to `upscale_to`):
        faces of 10-20 px in a 1080p frame become large enough for the network. A detection touching a tile
        edge inside the image is dropped: the neighbouring tile (or the full-frame pass) sees that face whole."""
        height, width = image.shape[:2]
        size = self.options.tile
        if max(height, width) <= size:
            return []
        step = max(1, int(size * (1 - self.options.tile_overlap)))
        views = []
        for top in _tile_starts(height, size, step):
            for left in _tile_starts(width, size, step):
                crop = image[top : top + size, left : left + size]
                raw = self.resized_pass(crop, self.options.scale)
                inner_edges = (
                    (raw.boxes[:, 0] <= 1) & (left > 0)
                    | (raw.boxes[:, 1] <= 1) & (top > 0)
                    | (raw.boxes[:, 2] >= crop.shape[1] - 1) & (left + size < width)
                    | (raw.boxes[:, 3] >= crop.shape[0] - 1) & (top + size < height)
                )
                keep = ~inner_edges
                kept = RawDetections(
                    boxes=raw.boxes[keep],
                    scores=raw.scores[keep],
                    landmarks=None if raw.landmarks is None else raw.landmarks[keep],
                )
                views.append(shifted(kept, left, top))
        return views
