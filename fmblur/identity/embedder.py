"""Face embedders behind a small registry, so another model can be added beside dlib's."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from fmblur.face import Face
from fmblur.registry import Registry


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


_REGISTRY: Registry[FaceEmbedder] = Registry("embedder")
register = _REGISTRY.register


def embedder_names() -> list[str]:
    return _REGISTRY.names()


def create_embedder(name: str = "dlib") -> FaceEmbedder:
    return _REGISTRY.get(name)()


def measurable(face: Face, embedder: FaceEmbedder) -> bool:
    """Whether the face is large enough for `embedder` to say something about identity."""
    return min(face.width, face.height) >= embedder.min_face
