"""onnxruntime sessions with explicit execution providers.

Left alone, onnxruntime may pick whatever provider a wheel registers first (e.g. Azure);
we ask for CUDA when this machine has it, then CPU.
"""

from __future__ import annotations

import onnxruntime as ort


def onnx_providers() -> list[str]:
    available = ort.get_available_providers()
    providers = ["CUDAExecutionProvider"] if "CUDAExecutionProvider" in available else []
    return [*providers, "CPUExecutionProvider"]


def make_session(model: bytes | str) -> ort.InferenceSession:
    """A session for an ONNX model given as bytes or a file path."""
    options = ort.SessionOptions()
    options.log_severity_level = 3  # the shipped models warn about unused initialisers; not actionable
    return ort.InferenceSession(model, sess_options=options, providers=onnx_providers())
