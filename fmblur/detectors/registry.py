"""Name -> detector class. Each detector family registers itself in its own module."""

from __future__ import annotations

from typing import Callable, TypeVar

from fmblur.detectors.base import Detector

DetectorType = TypeVar("DetectorType", bound=type[Detector])

_REGISTRY: dict[str, type[Detector]] = {}


def register(name: str) -> Callable[[DetectorType], DetectorType]:
    def decorate(cls: DetectorType) -> DetectorType:
        if name in _REGISTRY:
            raise ValueError(f"detector {name!r} is registered twice")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def detector_names() -> list[str]:
    return list(_REGISTRY)


def available_detector_names() -> list[str]:
    """Registered detectors whose weights are here (the project's untrained variants are left out)."""
    return [name for name, cls in _REGISTRY.items() if cls.available()]


def detector_class(name: str) -> type[Detector]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown detector {name!r}; choose one of: {', '.join(_REGISTRY)}") from None


def create_detector(name: str, **options) -> Detector:
    """A new detector instance; the model loads on first use."""
    return detector_class(name)(**options)
