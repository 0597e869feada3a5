"""Named presets: the detectors the app and CLI offer first.

- `recall-first` (the default; also `thorough`): the ensemble of CenterFace (also on the mirrored image),
  RetinaFace and MTCNN, calibrated and fused; several times the cost of one pass.
- `fast`: RetinaFace alone at the frame's own resolution (no enlargement of small images).
Their measured recall and speed are in docs/results/ (written by `fmblur eval` and `python -m fmblur.bench`)
and shown in the app from there.
"""

from __future__ import annotations

from fmblur.detectors.ensemble import DEFAULT_MEMBERS, EnsembleDetector
from fmblur.detectors.registry import register
from fmblur.detectors.retinaface import RetinaFaceDetector

PRESETS = ("recall-first", "thorough", "fast")


@register("recall-first")
class RecallFirstPreset(EnsembleDetector):
    """CenterFace (+ mirror), RetinaFace and MTCNN: calibrated scores, weighted box fusion, noisy-or scores."""

    def __init__(self, threshold: float | None = None, members: tuple[str, ...] = DEFAULT_MEMBERS, **options) -> None:
        super().__init__(threshold=threshold, members=members, **options)


@register("thorough")
class ThoroughPreset(RecallFirstPreset):
    """The ensemble of `recall-first` under the name of what it is: the most passes, for offline work. A faster
    default is meant to take `recall-first`'s place (issue "Miss no face, fast"); `thorough` stays this."""


@register("fast")
class FastPreset(RetinaFaceDetector):
    """RetinaFace at the input's own resolution: over 30 frames per second at 640x480 on 2 CPU cores."""

    def __init__(self, threshold: float | None = None, upscale_to: int = 0, **options) -> None:
        super().__init__(threshold=threshold, upscale_to=upscale_to, **options)
