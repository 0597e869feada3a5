"""onnxruntime sessions with explicit execution providers, from the process's device choice (fmblur.device)."""

from __future__ import annotations

from abc import abstractmethod
from pathlib import Path

import numpy as np
import onnxruntime as ort

from fmblur.detectors.base import RawDetections, SinglePassDetector
from fmblur.device import cpu_cores, onnx_providers
from fmblur.resources import weights_path


def make_session(
    model: bytes | str, providers: tuple[str, ...] | None = None, threads: int = 0
) -> ort.InferenceSession:
    """A session for an ONNX model given as bytes or a file path, running each graph on `threads` CPU threads
    (0: onnxruntime's choice, one per physical core)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3  # the shipped models warn about unused initialisers; not actionable
    # onnxruntime's worker threads otherwise spin after each run, waiting for the next one, and take the CPU from
    # the work between runs (tracking, decoding, hiding on other threads). With 2 cores, a 720p clip through the
    # video default ran 7 % faster without it (39.3 s against 36.4 s, two runs each); detection alone within 1 ms.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model, sess_options=options, providers=list(providers or onnx_providers()))


# Inputs above this many pixels (photos larger than 1080p, capped at max_side 2048) give their working memory back
# after the run: onnxruntime's arena otherwise keeps each session's peak, and the default preset holds three
# sessions (a 108-MP photo peaked at 3.1 GB). Frames up to 1080p keep the arena, which halves CenterFace's time.
ARENA_RELEASE_PIXELS = 2_500_000


def _release_arena() -> ort.RunOptions:
    options = ort.RunOptions()
    options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
    return options


def run_session(session: ort.InferenceSession, outputs: list[str] | None, feeds: dict[str, np.ndarray]) -> list:
    """`session.run`, releasing the arena after inputs above ARENA_RELEASE_PIXELS (NCHW: the last two axes)."""
    largest = max(feed.shape[-1] * feed.shape[-2] for feed in feeds.values())
    return session.run(outputs, feeds, _release_arena() if largest > ARENA_RELEASE_PIXELS else None)


def session_runtime(session: ort.InferenceSession) -> str:
    """The provider that actually runs the session (the first one onnxruntime could load)."""
    return f"onnxruntime {session.get_providers()[0]}"


class OnnxDetector(SinglePassDetector):
    """A single-pass detector that runs one ONNX graph through onnxruntime: its package's pretrained weights, or
    weights/`weights_file` when a fine-tuned subclass (`FineTunedWeights`) names one. Subclasses open the
    session in `_open(fine_tuned, providers, threads)` (`fine_tuned` is None for the package's weights;
    `threads` as `make_session` takes it), keep it in `self._session`, and detect on a batch in `_detect_many`."""

    has_landmarks = True
    default_threshold = 0.5
    licence = "MIT"

    # CPU threads of each run (0: onnxruntime's choice, one per physical core); `share_cores` sets it.
    intra_op_threads = 0

    @abstractmethod
    def _open(self, fine_tuned: Path | None, providers: tuple[str, ...], threads: int) -> None: ...

    def _load(self) -> None:
        fine_tuned = weights_path(self.weights_file) if self.weights_file else None
        self._open(fine_tuned, onnx_providers(), self.intra_op_threads)

    def share_cores(self, callers: int) -> bool:
        """Sessions with a share of the cores each: two 720p frames run at once on one thread each took 36 ms a
        frame on 2 cores, against 42 ms one at a time on both cores (the `fast` preset; `thorough` 376 against
        454 ms): a small graph's layers do not keep two threads busy. Sessions stay cached per thread count."""
        threads = 0 if callers <= 1 else max(1, cpu_cores() // callers)
        if threads != self.intra_op_threads:
            self.intra_op_threads = threads
            self._loaded = False  # the next run opens (or finds cached) sessions with that many threads
        return True

    def _detect(self, image: np.ndarray, threshold: float) -> RawDetections:
        return self._detect_many([image], threshold)[0]

    @abstractmethod
    def _detect_many(self, images: list[np.ndarray], threshold: float) -> list[RawDetections]:
        """Detect on arrays of one size (sides multiples of `pad_multiple`) in one session run: the graphs here
        take a batch, so one image is a batch of one."""

    def runtime(self) -> str:
        return session_runtime(self._session) if self._loaded else super().runtime()
