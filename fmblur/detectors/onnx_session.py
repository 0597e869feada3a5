"""onnxruntime sessions with explicit execution providers, from the process's device choice (fmblur.device)."""

from __future__ import annotations

import onnxruntime as ort

from fmblur.device import onnx_providers


def make_session(model: bytes | str, providers: tuple[str, ...] | None = None) -> ort.InferenceSession:
    """A session for an ONNX model given as bytes or a file path."""
    options = ort.SessionOptions()
    options.log_severity_level = 3  # the shipped models warn about unused initialisers; not actionable
    return ort.InferenceSession(model, sess_options=options, providers=list(providers or onnx_providers()))


def session_runtime(session: ort.InferenceSession) -> str:
    """The provider that actually runs the session (the first one onnxruntime could load)."""
    return f"onnxruntime {session.get_providers()[0]}"
