"""onnxruntime sessions with explicit execution providers, from the process's device choice (fmblur.device)."""

from __future__ import annotations

from abc import abstractmethod
from pathlib import Path

import onnxruntime as ort

from fmblur.detectors.base import SinglePassDetector
from fmblur.device import onnx_providers
from fmblur.resources import weights_path


def make_session(model: bytes | str, providers: tuple[str, ...] | None = None) -> ort.InferenceSession:
    """A session for an ONNX model given as bytes or a file path."""
    options = ort.SessionOptions()
    options.log_severity_level = 3  # the shipped models warn about unused initialisers; not actionable
    return ort.InferenceSession(model, sess_options=options, providers=list(providers or onnx_providers()))


def session_runtime(session: ort.InferenceSession) -> str:
    """The provider that actually runs the session (the first one onnxruntime could load)."""
    return f"onnxruntime {session.get_providers()[0]}"


class OnnxDetector(SinglePassDetector):
    """A single-pass detector that runs one ONNX graph through onnxruntime: its package's pretrained weights, or
    weights/`weights_file` when a fine-tuned subclass (`FineTunedWeights`) names one. Subclasses open the
    session in `_open(fine_tuned, providers)` (`fine_tuned` is None for the package's weights) and keep it
    in `self._session`."""

    has_landmarks = True
    default_threshold = 0.5
    licence = "MIT"

    @abstractmethod
    def _open(self, fine_tuned: Path | None, providers: tuple[str, ...]) -> None: ...

    def _load(self) -> None:
        self._open(weights_path(self.weights_file) if self.weights_file else None, onnx_providers())

    def runtime(self) -> str:
        return session_runtime(self._session) if self._loaded else super().runtime()
