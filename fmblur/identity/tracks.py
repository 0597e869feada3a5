"""Identity decisions for video, once per track, so a kept person never flickers into blur and back.

While the video is analysed, each track keeps its best-quality detections (score x face size); after the
last frame every track is decided from those frames together: it is shown only if every one of them is
clearly shown by the selection rule (fmblur.identity.selection), otherwise hidden in all its frames.
Regions without a track (a detection ByteTrack has not confirmed yet) take the decision of the track that
continues them in the next frames; with none they are hidden.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fmblur.face import Face
from fmblur.geometry import iou_matrix
from fmblur.identity.selection import IdentityDecision, IdentitySelection
from fmblur.tracking import CoveredFace

BEST_FRAMES = 3
LINK_FRAMES = 3  # an untracked region joins a track found within this many later frames...
LINK_IOU = 0.5  # ...overlapping it this much


@dataclass
class _Candidate:
    quality: float
    crop: np.ndarray
    face: Face  # in crop coordinates


@dataclass
class TrackIdentities:
    selection: IdentitySelection
    best_frames: int = BEST_FRAMES
    _candidates: dict[int, list[_Candidate]] = field(default_factory=dict)

    def observe(self, image: np.ndarray, covered: list[CoveredFace]) -> None:
        """Remember the best detections of each track (called on frames the detector ran on)."""
        height, width = image.shape[:2]
        for item in covered:
            face = item.detected
            if item.track_id < 0 or face is None:
                continue
            quality = face.score * min(face.width, face.height)
            kept = self._candidates.setdefault(item.track_id, [])
            if len(kept) >= self.best_frames and quality <= kept[-1].quality:
                continue
            # A crop with one face-size of context on each side is all the embedder needs.
            x1, y1, x2, y2 = face.box
            left, top = int(max(0, x1 - face.width)), int(max(0, y1 - face.height))
            right, bottom = int(min(width, x2 + face.width)), int(min(height, y2 + face.height))
            shifted = face.moved_to(np.asarray(face.box) - [left, top, left, top])
            kept.append(_Candidate(quality, image[top:bottom, left:right].copy(), shifted))
            kept.sort(key=lambda c: -c.quality)
            del kept[self.best_frames :]

    def decide(self) -> dict[int, IdentityDecision]:
        """Per track id: one decision from its best frames (hidden unless all of them say show)."""
        decisions = {}
        for track_id, candidates in self._candidates.items():
            votes = [self.selection.decide_embedding(self.selection.embedding_of(c.crop, c.face)) for c in candidates]
            hidden = [vote for vote in votes if vote.hide]
            decisions[track_id] = hidden[0] if hidden else votes[0]
        return decisions


def link_untracked(plan: list[list[CoveredFace]]) -> list[list[int]]:
    """For every region of every frame, its track id, or that of the track continuing it within
    LINK_FRAMES frames (IoU >= LINK_IOU); -1 when none does."""
    linked = []
    for index, covered in enumerate(plan):
        ids = [item.track_id for item in covered]
        for slot, item in enumerate(covered):
            if item.track_id >= 0:
                continue
            for later in plan[index + 1 : index + 1 + LINK_FRAMES]:
                tracked = [c for c in later if c.track_id >= 0]
                if not tracked:
                    continue
                overlap = iou_matrix(np.asarray([item.face.box]), np.array([c.face.box for c in tracked]))[0]
                if overlap.max() >= LINK_IOU:
                    ids[slot] = tracked[int(overlap.argmax())].track_id
                    break
        linked.append(ids)
    return linked
