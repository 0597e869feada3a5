"""What every face detector shares: input checks, the threshold, faces from raw detections; and what every
single-pass network shares: padding, and test-time views (`views.py`) around its one pass."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

from fmblur.detectors.records import RawDetections
from fmblur.detectors.views import TestTimeViews, ViewOptions, merge_views, shifted, without_nested
from fmblur.face import Face, landmarks_from_array
from fmblur.geometry import crops_around
from fmblur.resources import verify_file, weights_path

__all__ = ["Detector", "DetectorUnavailable", "RawDetections", "SinglePassDetector", "as_rgb_uint8"]


# Crops for `detect_around` start on this lattice: the coarsest stride of the networks here (feature pyramids to
# stride 32), so a crop's feature cells are the whole image's cells there.
STRIDE_GRID = 32
# Context kept around a box on such a crop: with 128 px, `thorough` scored a face half behind a pole (clip1 of
# the leak benchmark, frames 165-178) as on the whole frame within 0.01 (with 64 px up to 0.17 lower), and the
# example photos' faces within 0.001 (RetinaFace within 0.022).
AROUND_MARGIN = 128


class DetectorUnavailable(RuntimeError):
    """The detector's package or weights are not installed on this machine."""


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
    """A face detector: `detect_raw` gives candidates in the image's pixels, `detect` the faces above `threshold`.

    Subclasses implement `_load` (called once, lazily) and `detect_raw`."""

    name: str = ""
    has_landmarks: bool = False
    default_threshold: float = 0.5
    source: str = ""  # where the weights come from (a package, or trained here)
    licence: str = ""
    # The file in weights/ of a model trained here (None: the weights come with a pip package).
    weights_file: str | None = None

    def __init__(self, threshold: float | None = None) -> None:
        if threshold is None:
            threshold = self.default_threshold
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold}")
        self.threshold = float(threshold)
        self._loaded = False

    @classmethod
    def available(cls) -> bool:
        """False when this detector's weights are not on this machine (a project model not trained yet)."""
        return cls.weights_file is None or weights_path(cls.weights_file).is_file()

    @classmethod
    def training_command(cls) -> str:
        """For a project model: the command that trains its weights ("" for pretrained detectors)."""
        return ""

    def runtime(self) -> str:
        """What runs the loaded model, as it actually ran (e.g. "onnxruntime CUDAExecutionProvider", "torch cpu")."""
        return "not loaded"

    @abstractmethod
    def _load(self) -> None:
        """Load the model. Raise DetectorUnavailable when its package or weights are missing."""

    @abstractmethod
    def detect_raw(self, image: np.ndarray) -> RawDetections:
        """Candidates in `image` (RGB uint8), in its pixels, before the threshold (the model's floor applies)."""

    def load(self) -> Detector:
        if not self._loaded:
            self._load()
            self._loaded = True
        return self

    def share_cores(self, callers: int) -> bool:
        """Get ready to be run from `callers` threads at once, each run using its share of the CPU cores instead
        of all of them (1: a single caller again). False, changing nothing, where this detector's runtime keeps
        one pool of threads per process (torch): then run it from one thread."""
        return callers <= 1

    @contextmanager
    def reporting_down_to(self, floor: float) -> Iterator[Detector]:
        """Within this block the detector also reports faces scoring down to `floor` (below its threshold):
        video's tracker takes them as weak evidence."""
        threshold = self.threshold
        self.threshold = min(threshold, floor)
        try:
            yield self
        finally:
            self.threshold = threshold

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in `image` (RGB uint8, any size), highest score first, boxes clipped to the image."""
        return self.detect_batch([image])[0]

    def detect_around(self, image: np.ndarray, boxes: np.ndarray, margin: int = AROUND_MARGIN) -> list[Face] | None:
        """The faces `detect` would find near `boxes`, found on crops around them (`margin` px of picture on
        each side, corners on the stride grid), a fraction of the cost of the whole image. None when this
        detector would not see such a crop as it sees the whole image (it enlarges the image, runs other scales,
        tiles or mirrors): then only `detect` on the whole image answers."""
        image = as_rgb_uint8(image)
        height, width = image.shape[:2]
        self.load()
        raw = self.detect_raw_around(image, crops_around(boxes, (width, height), margin, STRIDE_GRID))
        return None if raw is None else self._faces(raw, width, height)

    def detect_raw_around(self, image: np.ndarray, crops: list[tuple[int, int, int, int]]) -> RawDetections | None:
        """Candidates on these crops of `image` (x1, y1, x2, y2), in the image's pixels, as `detect_raw` finds them
        there; None where it would not (see `detect_around`)."""
        return None

    def detect_batch(self, images: list[np.ndarray]) -> list[list[Face]]:
        """The faces of each image, as `detect` gives them, run as one batch where this detector can
        (`detect_raw_batch`: frames of one size through a network at their own size; on a GPU one run of N frames
        costs far less than N runs)."""
        images = [as_rgb_uint8(image) for image in images]
        for image in images:
            if image.shape[0] == 0 or image.shape[1] == 0:
                raise ValueError(f"empty image of shape {image.shape}")
        self.load()
        raws = self.detect_raw_batch(images) if len(images) > 1 else None
        if raws is None:
            raws = [self.detect_raw(image) for image in images]
        return [self._faces(raw, image.shape[1], image.shape[0]) for raw, image in zip(raws, images, strict=True)]

    def detect_raw_batch(self, images: list[np.ndarray]) -> list[RawDetections] | None:
        """`detect_raw` of each image (RGB uint8, all of one size) from one batched run; None where this
        detector has no such run (then each image is detected on its own)."""
        return None

    def _faces(self, raw: RawDetections, width: int, height: int) -> list[Face]:
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

    def __repr__(self) -> str:
        return f"{type(self).__name__}(threshold={self.threshold})"


class SinglePassDetector(Detector):
    """A network that detects in one pass (`_detect`), run over the test-time views its options name
    (see `ViewOptions`: scale, upscale_to, max_side, extra_scales, flip, tile, tile_overlap)."""

    # Networks with strided feature pyramids need input sides that are multiples of this;
    # the copy is padded at the bottom/right, which leaves coordinates unchanged.
    pad_multiple: int = 32
    # Tiny inputs (a 1x1 upload) are padded up to this so every network has at least one feature cell.
    min_input_side: int = 32

    def __init__(self, threshold: float | None = None, **view_options) -> None:
        super().__init__(threshold)
        self.views = TestTimeViews(self._padded_pass, ViewOptions(**view_options), self.has_landmarks)

    @abstractmethod
    def _detect(self, image: np.ndarray, threshold: float) -> RawDetections:
        """Detect on an RGB uint8 array whose sides are multiples of `pad_multiple`."""

    def _detect_many(self, images: list[np.ndarray], threshold: float) -> list[RawDetections]:
        """`_detect` on arrays of one size; networks that take a batch override this to run them at once."""
        return [self._detect(image, threshold) for image in images]

    def detect_raw(self, image: np.ndarray) -> RawDetections:
        self.load()
        return self.views(image)

    def _one_pass_at_own_size(self, shape: tuple[int, ...]) -> bool:
        """Whether `views` runs one pass on an image of this shape, at its own size (no resizing, other scales,
        mirror or tiles): then the pass on a crop, or on a batch of such images, is what `detect_raw` runs."""
        options = self.views.options
        one_view = options.scale == 1.0 and not (options.extra_scales or options.extra_sides or options.flip)
        own_size = options.upscale_to <= max(shape[:2]) <= options.max_side
        return one_view and own_size and not options.tile

    def detect_raw_batch(self, images: list[np.ndarray]) -> list[RawDetections] | None:
        if len({image.shape for image in images}) != 1 or not self._one_pass_at_own_size(images[0].shape):
            return None
        self.load()
        found = self._detect_many([self._pad(image) for image in images], self.threshold)
        return [without_nested(raw, self.views.options.nested_share) for raw in found]

    def detect_raw_around(self, image: np.ndarray, crops: list[tuple[int, int, int, int]]) -> RawDetections | None:
        if not (self._one_pass_at_own_size(image.shape) and STRIDE_GRID % self.pad_multiple == 0):
            return None
        found = [
            shifted(self._padded_pass(np.ascontiguousarray(image[y1:y2, x1:x2])), x1, y1) for x1, y1, x2, y2 in crops
        ]
        if not found:
            return RawDetections.empty(with_landmarks=self.has_landmarks)
        return without_nested(merge_views(found, self.has_landmarks), self.views.options.nested_share)

    def _padded_pass(self, image: np.ndarray) -> RawDetections:
        return self._detect(self._pad(image), self.threshold)

    def _pad(self, image: np.ndarray) -> np.ndarray:
        multiple, min_side = self.pad_multiple, self.min_input_side
        height, width = image.shape[:2]
        pad_h = max(min_side, -(-height // multiple) * multiple) - height
        pad_w = max(min_side, -(-width // multiple) * multiple) - width
        if pad_h == 0 and pad_w == 0:
            return image
        return cv2.copyMakeBorder(image, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT, value=(0, 0, 0))

    def __repr__(self) -> str:
        options = self.views.options
        return (
            f"{type(self).__name__}(threshold={self.threshold}, scale={options.scale}, "
            f"upscale_to={options.upscale_to}, flip={options.flip}, tile={options.tile})"
        )


def fine_tuned_weights_file(base: str) -> str:
    """The weights/ file of the detector fine-tuned here from `base` (`fmblur train finetune --export`)."""
    return f"{base}_masked.onnx"


def finetune_command(base: str) -> str:
    return f"fmblur train finetune --base {base}, then the same with --export"


def read_fine_tuned(base: str, path: Path) -> bytes:
    """The fine-tuned ONNX graph of `base` after its SHA-256 check; a clear error when it was never made."""
    if not path.is_file():
        raise DetectorUnavailable(f"{path} is missing: {finetune_command(base)}")
    return verify_file(f"{base}-masked", path).read_bytes()


class FineTunedWeights:
    """A pretrained detector fine-tuned here (`fmblur train finetune --base <base>`): its weights file in
    weights/, what the card says of them, and how to make them when they are missing. Mix in before the base
    detector's class, which loads `weights_file` instead of its package's weights when one is set."""

    base = ""
    licence = "MIT code; weights trained on WIDER FACE: non-commercial research use"

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        cls.weights_file = fine_tuned_weights_file(cls.base)

    @classmethod
    def training_command(cls) -> str:
        return finetune_command(cls.base)
