"""Which device runs the models: `auto` (CUDA when present), `cpu` or `cuda`; one choice per process.

The CLI's `--device` and the app set it once at start; every model loader asks it (torch models through
`torch_device()`, onnxruntime sessions through `onnx_providers()`), and each detector reports what actually
ran (`runtime`), since onnxruntime quietly falls back to the CPU when its CUDA provider cannot load.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import onnxruntime as ort

if TYPE_CHECKING:
    import torch

DEVICES = ("auto", "cpu", "cuda")
_selected = "auto"


class DeviceUnavailable(RuntimeError):
    """CUDA was asked for on a machine (or an install) without it."""


def onnx_has_cuda() -> bool:
    return "CUDAExecutionProvider" in ort.get_available_providers()


def select_device(requested: str) -> None:
    """Use `requested` for every model loaded from now on (`resolved_device` says where torch models go).

    `cuda` without a GPU visible to PyTorch, or without onnxruntime's CUDA build (requirements-gpu.txt),
    is one clear error rather than a silent run on the CPU."""
    global _selected
    if requested not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {requested!r}")
    if requested == "cuda":
        if not _torch_has_cuda():
            raise DeviceUnavailable("--device cuda: PyTorch sees no CUDA GPU here (use --device cpu or auto)")
        if not onnx_has_cuda():
            raise DeviceUnavailable(
                "--device cuda: this onnxruntime has no CUDAExecutionProvider; install the GPU build "
                "(pip install -r requirements-gpu.txt)"
            )
    _selected = requested


def selected_device() -> str:
    """What was asked for: auto, cpu or cuda."""
    return _selected


def _torch_has_cuda() -> bool:
    import torch  # here, not at the top: the ONNX detectors that run by default need no torch (3 s to import)

    return torch.cuda.is_available()


def resolved_device() -> str:
    """cpu or cuda: where torch models go under the current choice."""
    return "cuda" if _selected != "cpu" and _torch_has_cuda() else "cpu"


def torch_device() -> torch.device:
    import torch

    return torch.device(resolved_device())


def onnx_providers() -> tuple[str, ...]:
    """Explicit providers (left alone, onnxruntime may pick whatever a wheel registers first, e.g. Azure)."""
    cuda = ("CUDAExecutionProvider",) if _selected != "cpu" and onnx_has_cuda() else ()
    return (*cuda, "CPUExecutionProvider")


def cpu_cores() -> int:
    """The CPU cores this process may run on (a container's share, not the host's count, where the OS says)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
