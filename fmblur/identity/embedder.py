"""Face embedders behind a small registry, so another model can be added beside dlib's."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Callable, TypeVar

import numpy as np

from fmblur.face import Face


class FaceEmbedder(ABC):
    """Maps an aligned face to a vector; two faces are the same person when their distance < `threshold`.

    align() and embed() are separate so the privacy meter can embed an anonymised face with the alignment
    found on its original (an attacker's best case: the face is hidden, where it is and how it is posed is not).
    """

    name: str = ""
    threshold: float = 0.6
    # Shorter box side (px) below which an embedding says little about identity (decisions treat it as unsure).
    min_face: float = 32.0

    @abstractmethod
    def align(self, image: np.ndarray, face: Face) -> Any:
        """This model's alignment of one face (e.g. landmark points) on an RGB uint8 image."""

    @abstractmethod
    def embed(self, image: np.ndarray, alignment: Any) -> np.ndarray:
        """The embedding of the face at `alignment` in `image`."""

    def embed_faces(self, image: np.ndarray, faces: list[Face]) -> np.ndarray:
        """(N, D) embeddings of faces found in `image`."""
        image = np.ascontiguousarray(image)
        vectors = [self.embed(image, self.align(image, face)) for face in faces]
        return np.array(vectors, np.float64).reshape(len(faces), -1)

    @staticmethod
    def distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Euclidean distance along the last axis (broadcasting)."""
        return np.linalg.norm(np.asarray(a) - np.asarray(b), axis=-1)


EmbedderType = TypeVar("EmbedderType", bound=type[FaceEmbedder])
_REGISTRY: dict[str, type[FaceEmbedder]] = {}


def register(name: str) -> Callable[[EmbedderType], EmbedderType]:
    def decorate(cls: EmbedderType) -> EmbedderType:
        if name in _REGISTRY:
            raise ValueError(f"embedder {name!r} is registered twice")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def embedder_names() -> list[str]:
    _load_builtin()
    return list(_REGISTRY)


def create_embedder(name: str = "dlib") -> FaceEmbedder:
    _load_builtin()
    try:
        return _REGISTRY[name]()
    except KeyError:
        raise ValueError(f"unknown embedder {name!r}; choose one of: {', '.join(_REGISTRY)}") from None


def _load_builtin() -> None:
    from fmblur.identity import dlib_resnet  # noqa: F401  (registers itself)
