"""Name -> detector class. Each detector family registers itself in its own module."""

from __future__ import annotations

from fmblur.detectors.base import Detector
from fmblur.registry import Registry

_REGISTRY: Registry[Detector] = Registry("detector")
register = _REGISTRY.register


def detector_names() -> list[str]:
    return _REGISTRY.names()


def available_detector_names() -> list[str]:
    """Registered detectors whose weights are here (the project's untrained variants are left out)."""
    return [name for name, cls in _REGISTRY.items() if cls.available()]


def detector_class(name: str) -> type[Detector]:
    return _REGISTRY.get(name)


def create_detector(name: str, **options) -> Detector:
    """A new detector instance; the model loads on first use."""
    return detector_class(name)(**options)
