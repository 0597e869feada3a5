"""Name -> landmark source. A source adds (or replaces) named landmarks on detected faces."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np

from fmblur.face import Face
from fmblur.registry import Registry


class LandmarkSource(ABC):
    name: str = ""

    def runtime(self) -> str:
        """What computes the landmarks (numpy and dlib run on the CPU; the ResNet18 says its torch device)."""
        return "cpu"

    @abstractmethod
    def apply(self, image: np.ndarray, faces: Sequence[Face]) -> list[Face]:
        """The same faces, in the same order, with this source's landmarks (None where it has none)."""


_REGISTRY: Registry[LandmarkSource] = Registry("landmark source")
register = _REGISTRY.register


def landmark_source_names() -> list[str]:
    return _REGISTRY.names()


def create_landmark_source(name: str) -> LandmarkSource:
    return _REGISTRY.get(name)()
