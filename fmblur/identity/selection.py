"""Choose whom to hide: keep the people in reference photos visible, or hide only them.

Uncertainty never unhides a face. A face is clearly a reference person when it was embedded (landmarks
found, large enough), lies within the same-person threshold minus a margin of a reference, and is nearer to
it, by the margin, than to any impostor of the gallery (masked faces of strangers often sit within dlib's 0.6
of each other, so the threshold alone is not enough). It is clearly someone else when it lies beyond the
threshold plus the margin, or nearer, by the margin, to an impostor. Anything between is unsure and hidden in
both modes: "keep" shows only clear reference faces, "only" shows only clear strangers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from fmblur.face import Face
from fmblur.identity.embedder import FaceEmbedder, create_embedder, measurable
from fmblur.identity.gallery import impostor_gallery
from fmblur.image_io import ImageReadError, read_image

SelectionMode = Literal["keep", "only"]
MARGIN = 0.05  # distance units either side of the threshold treated as unsure


class ReferenceError(ValueError):
    """A reference photo cannot serve: unreadable, no face, or a face too small to recognise."""


@dataclass(frozen=True)
class IdentityDecision:
    hide: bool
    distance: float | None  # to the nearest reference; None when not measured
    reason: str  # "reference", "not reference", "unsure: ..."


@dataclass
class IdentitySelection:
    """Reference embeddings and the rule that turns a face into hide / show."""

    mode: SelectionMode
    references: np.ndarray  # (R, D)
    embedder: FaceEmbedder
    impostors: np.ndarray = field(default_factory=lambda: np.zeros((0, 128)))
    margin: float = MARGIN

    def __post_init__(self) -> None:
        if self.mode not in ("keep", "only"):
            raise ValueError(f"selection mode must be keep or only, got {self.mode!r}")
        if len(self.references) == 0:
            raise ReferenceError("at least one reference face is needed")

    def embedding_of(self, image: np.ndarray, face: Face) -> np.ndarray | None:
        """The face's embedding, or None when it is too unsure to embed (tiny, or no landmarks)."""
        if face.landmarks is None or not measurable(face, self.embedder):
            return None
        image = np.ascontiguousarray(image)
        return self.embedder.embed(image, self.embedder.align(image, face))

    def decide_embedding(
        self, embedding: np.ndarray | None, why_unsure: str = "too small or no landmarks"
    ) -> IdentityDecision:
        if embedding is None:
            return IdentityDecision(True, None, f"unsure: {why_unsure}")
        distance = float(self.embedder.distance(self.references, embedding).min())
        nearest_impostor = (
            float(self.embedder.distance(self.impostors, embedding).min()) if len(self.impostors) else np.inf
        )
        threshold, margin = self.embedder.threshold, self.margin
        # Clearly the reference person: well within the threshold and clearly nearer to a reference than to
        # anyone else. Clearly someone else: beyond the threshold, or clearly nearer to another person.
        clearly_reference = distance < threshold - margin and distance + margin < nearest_impostor
        clearly_other = distance >= threshold + margin or nearest_impostor + margin < distance
        if clearly_reference:
            return IdentityDecision(self.mode == "only", distance, "reference")
        if clearly_other:
            return IdentityDecision(self.mode == "keep", distance, "not reference")
        return IdentityDecision(True, distance, "unsure: near the threshold or an impostor")

    def decide(self, image: np.ndarray, faces: Sequence[Face]) -> list[IdentityDecision]:
        return [self.decide_embedding(self.embedding_of(image, face)) for face in faces]


def reference_embedding(image: np.ndarray, faces: Sequence[Face], embedder: FaceEmbedder, name: str) -> np.ndarray:
    """The embedding of the largest face of a reference photo."""
    if not faces:
        raise ReferenceError(f"{name}: no face found in the reference photo")
    face = max(faces, key=lambda f: f.width * f.height)
    if not measurable(face, embedder):
        raise ReferenceError(
            f"{name}: the face is {min(face.width, face.height):.0f} px, too small to recognise "
            f"(at least {embedder.min_face:.0f} px needed)"
        )
    image = np.ascontiguousarray(image)
    return embedder.embed(image, embedder.align(image, face))


def build_selection(
    mode: SelectionMode,
    photos: Sequence[str | Path | np.ndarray],
    detector,
    embedder_name: str = "dlib",
) -> IdentitySelection:
    """Read reference photos (paths or RGB arrays), embed the largest face of each."""

    embedder = create_embedder(embedder_name)
    vectors = []
    for number, photo in enumerate(photos, start=1):
        name = Path(photo).name if isinstance(photo, (str, Path)) else f"reference photo {number}"
        try:
            image = read_image(photo)[0] if isinstance(photo, (str, Path)) else photo
        except (ImageReadError, OSError) as error:
            raise ReferenceError(f"{name}: {error}") from None
        vectors.append(reference_embedding(image, detector.detect(image), embedder, name))
    return IdentitySelection(mode, np.array(vectors), embedder, impostor_gallery(embedder_name))
