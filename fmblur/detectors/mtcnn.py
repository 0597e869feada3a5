"""MTCNN from `facenet-pytorch` 2.5.3 (weights inside the wheel): 5 landmarks, MIT."""

from __future__ import annotations

import functools
import inspect
from pathlib import Path

import numpy as np

from fmblur.detectors.base import DetectorUnavailable, RawDetections, SinglePassDetector
from fmblur.detectors.registry import register
from fmblur.device import resolved_device
from fmblur.resources import verify_file


@functools.cache
def _load_mtcnn(min_face_size: int, device: str):
    """facenet-pytorch's MTCNN, built once per process, face size and device."""
    try:
        from facenet_pytorch import MTCNN
    except ImportError as error:
        raise DetectorUnavailable("mtcnn needs the `facenet-pytorch==2.5.3` package") from error
    # facenet-pytorch loads these itself (torch.load, which defaults to weights_only=True in this torch);
    # check them first so a modified file is refused rather than run.
    data = Path(inspect.getfile(MTCNN)).parents[1] / "data"
    for net in ("pnet", "rnet", "onet"):
        verify_file(f"mtcnn_{net}", data / f"{net}.pt")
    return MTCNN(keep_all=True, min_face_size=min_face_size, device=device).eval()


@register("mtcnn")
class MTCNNDetector(SinglePassDetector):
    """MTCNN (Zhang et al. 2016), facenet-pytorch's port of the original weights."""

    has_landmarks = True
    default_threshold = 0.9
    source = "`facenet-pytorch` 2.5.3 (MTCNN P/R/O-Net)"
    licence = "MIT"
    pad_multiple = 1  # MTCNN runs its own image pyramid on any size
    min_face_size = 12  # smallest face the pyramid looks for (facenet-pytorch's default is 20)

    def _load(self) -> None:
        self._mtcnn = _load_mtcnn(self.min_face_size, resolved_device())

    def runtime(self) -> str:
        if not self._loaded:
            return super().runtime()
        import torch

        return f"torch {torch.device(self._mtcnn.device).type}"

    def _detect(self, image: np.ndarray, threshold: float) -> RawDetections:
        import torch  # loaded with facenet-pytorch by _load; not at import (3 s the ONNX detectors never need)

        with torch.inference_mode():
            boxes, scores, points = self._mtcnn.detect(image, landmarks=True)
        if boxes is None:  # facenet-pytorch signals "no face" with None
            return RawDetections.empty(with_landmarks=True)
        return RawDetections(
            boxes=np.asarray(boxes, np.float32),
            scores=np.asarray(scores, np.float32),
            landmarks=np.asarray(points, np.float32).reshape(-1, 5, 2),
        )
