"""Named presets: the detectors the app and CLI offer first.

- `balanced`: RetinaFace fine-tuned here on masked, dark and tiny faces (`retinaface-masked`), one pass on a
  copy enlarged to 800 px when smaller: the pretrained RetinaFace's cost, trained on what it missed.
- `thorough` (also `recall-first`, its earlier name): the ensemble of CenterFace (also on the mirrored image),
  RetinaFace and MTCNN, calibrated and fused; several times the cost.
- `fast`: RetinaFace alone at the frame's own resolution (no enlargement of small images).
Their measured recall and speed are in docs/results/ (written by `fmblur eval` and `python -m fmblur.bench`)
and shown in the app from there.
"""

from __future__ import annotations

from fmblur.detectors.ensemble import DEFAULT_MEMBERS, EnsembleDetector
from fmblur.detectors.registry import register
from fmblur.detectors.retinaface import MaskedRetinaFaceDetector, RetinaFaceDetector

PRESETS = ("balanced", "thorough", "recall-first", "fast")


@register("recall-first")
class RecallFirstPreset(EnsembleDetector):
    """CenterFace (+ mirror), RetinaFace and MTCNN: calibrated scores, weighted box fusion, noisy-or scores."""

    def __init__(self, threshold: float | None = None, members: tuple[str, ...] = DEFAULT_MEMBERS, **options) -> None:
        super().__init__(threshold=threshold, members=members, **options)


@register("thorough")
class ThoroughPreset(RecallFirstPreset):
    """The ensemble of `recall-first` under the name of what it is for: the most passes, for offline work."""


@register("balanced")
class BalancedPreset(MaskedRetinaFaceDetector):
    """RetinaFace fine-tuned on masked, dark and tiny faces, small images enlarged to 800 px: one pass."""


@register("fast")
class FastPreset(RetinaFaceDetector):
    """RetinaFace at the input's own resolution: over 30 frames per second at 640x480 on 2 CPU cores."""

    def __init__(self, threshold: float | None = None, upscale_to: int = 0, **options) -> None:
        super().__init__(threshold=threshold, upscale_to=upscale_to, **options)
