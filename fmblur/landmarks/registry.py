"""Name -> landmark source. A source adds (or replaces) named landmarks on detected faces."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable, Sequence, TypeVar

import numpy as np

from fmblur.face import Face


class LandmarkSource(ABC):
    name: str = ""

    @abstractmethod
    def apply(self, image: np.ndarray, faces: Sequence[Face]) -> list[Face]:
        """The same faces, in the same order, with this source's landmarks (None where it has none)."""


SourceType = TypeVar("SourceType", bound=type[LandmarkSource])
_REGISTRY: dict[str, type[LandmarkSource]] = {}


def register(name: str) -> Callable[[SourceType], SourceType]:
    def decorate(cls: SourceType) -> SourceType:
        if name in _REGISTRY:
            raise ValueError(f"landmark source {name!r} is registered twice")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def landmark_source_names() -> list[str]:
    return list(_REGISTRY)


def create_landmark_source(name: str) -> LandmarkSource:
    try:
        return _REGISTRY[name]()
    except KeyError:
        raise ValueError(f"unknown landmark source {name!r}; choose one of: {', '.join(_REGISTRY)}") from None
