"""Named presets: the detectors the app and CLI offer first.

- `recall-first` (the default): the ensemble of CenterFace (also on the mirrored image), RetinaFace and
  MTCNN, calibrated and fused; misses the fewest faces, at several times the cost.
- `fast`: RetinaFace alone at the frame's own resolution (no enlargement of small images).
Measured recall and speed of each are in the README and shown in the app.
"""

from __future__ import annotations

from fmblur.detectors.ensemble import DEFAULT_MEMBERS, EnsembleDetector
from fmblur.detectors.registry import register
from fmblur.detectors.retinaface import RetinaFaceDetector

# Measured by `fmblur eval` on the validation splits and `python -m fmblur.bench` (2-core CPU); shown in the
# app next to the detector menu. Update them when the presets change.
MEASURED: dict[str, str] = {
    "recall-first": "recall 0.856 on face-mask val, 0.818 on WIDER val; "
    "at <= 0.5 false positives per image 0.802 and 0.858 (best single detector: 0.795 and 0.846); "
    "~590 ms per 640x480 photo",
    "fast": "recall 0.521 on face-mask val (small faces missed), 0.759 on WIDER val; ~25 ms per 640x480 photo (40 fps)",
}


@register("recall-first")
class RecallFirstPreset(EnsembleDetector):
    """CenterFace (+ mirror), RetinaFace and MTCNN: calibrated scores, weighted box fusion, noisy-or scores."""

    def __init__(self, threshold: float | None = None, members: tuple[str, ...] = DEFAULT_MEMBERS, **options) -> None:
        super().__init__(threshold=threshold, members=members, **options)


@register("fast")
class FastPreset(RetinaFaceDetector):
    """RetinaFace at the input's own resolution: over 30 frames per second at 640x480 on 2 CPU cores."""

    def __init__(self, threshold: float | None = None, upscale_to: int = 0, **options) -> None:
        super().__init__(threshold=threshold, upscale_to=upscale_to, **options)
