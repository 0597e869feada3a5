"""The privacy meter: could an anonymised face still be recognised as the person it hides?

Each hidden face is embedded before and after anonymisation, both times with the alignment found on the
original (the attacker's best case: the face is hidden, where it is and how it is turned is not).
A face is re-identifiable when its anonymised embedding is within the embedder's same-person threshold of
its original and nearer to it than to any impostor of the shipped gallery or any other face of the image
(see fmblur.identity.gallery for why the threshold alone is not enough on masked faces). Faces smaller than
the embedder's `min_face` are reported as too small to measure: their embedding says little even unblurred.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fmblur.face import Face
from fmblur.identity.embedder import FaceEmbedder, measurable
from fmblur.identity.gallery import impostor_gallery


@dataclass(frozen=True)
class FacePrivacy:
    distance: float | None  # to the original; None: too small to measure
    within_threshold: bool | None  # distance < the embedder's same-person threshold
    reidentifiable: bool | None  # within the threshold and nearest to its original (rank-1)

    def to_json(self) -> dict:
        return {
            "distance": None if self.distance is None else round(self.distance, 4),
            "within_threshold": self.within_threshold,
            "reidentifiable": self.reidentifiable,
        }


@dataclass(frozen=True)
class PrivacyReport:
    faces: list[FacePrivacy]
    embedder: str
    threshold: float

    @property
    def measured(self) -> int:
        return sum(face.distance is not None for face in self.faces)

    @property
    def reidentifiable(self) -> int:
        return sum(bool(face.reidentifiable) for face in self.faces)

    @property
    def summary(self) -> str:
        text = f"{self.reidentifiable} of {self.measured} faces re-identifiable"
        too_small = len(self.faces) - self.measured
        if too_small:
            text += f" ({too_small} too small to measure)"
        return text

    def to_json(self) -> dict:
        return {
            "embedder": self.embedder,
            "threshold": self.threshold,
            "summary": self.summary,
            "reidentifiable": self.reidentifiable,
            "measured": self.measured,
            "faces": [face.to_json() for face in self.faces],
        }


def measure_privacy(
    original: np.ndarray,
    anonymised: np.ndarray,
    faces: list[Face],
    embedder: FaceEmbedder,
    impostors: np.ndarray | None = None,
) -> PrivacyReport:
    """One entry per face of `faces` (the faces that were hidden), in order.

    impostors: (M, D) embeddings of other people; default: the shipped gallery for this embedder.
    """

    impostors = impostor_gallery(embedder.name) if impostors is None else impostors
    original = np.ascontiguousarray(original)
    anonymised = np.ascontiguousarray(anonymised)
    measured = [i for i, face in enumerate(faces) if measurable(face, embedder)]
    alignments = {i: embedder.align(original, faces[i]) for i in measured}
    before = {i: embedder.embed(original, alignments[i]) for i in measured}
    records = []
    for index in range(len(faces)):
        if index not in alignments:
            records.append(FacePrivacy(None, None, None))
            continue
        after = embedder.embed(anonymised, alignments[index])
        distance = float(embedder.distance(before[index], after))
        others = [before[j] for j in measured if j != index]
        candidates = np.vstack([impostors, *others]) if others else impostors
        nearest_other = float(embedder.distance(candidates, after).min()) if len(candidates) else np.inf
        within = distance < embedder.threshold
        records.append(FacePrivacy(distance, within, within and distance < nearest_other))
    return PrivacyReport(records, embedder.name, embedder.threshold)
