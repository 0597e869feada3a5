"""An impostor gallery: embeddings of hundreds of other people, so "re-identified" means picked out among them.

dlib's same-person threshold alone is no privacy test on masked faces: on face-mask val faces a solid black
fill still left 25 % of faces within 0.6 of their original (masked faces of different people sit ~0.62 apart).
A face counts as re-identified only when its anonymised embedding is within the threshold of its original
AND nearer to its original than to every impostor and every other face of the image (rank-1 identification).

The gallery ships as weights/impostors_<embedder>.npy (CC0 face-mask training photos 0..239 without the
examples/ photos, faces of at least the embedder's min_face), built by `build_gallery`.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from fmblur.datasets import load_split
from fmblur.face import Face
from fmblur.identity.embedder import FaceEmbedder, create_embedder, measurable
from fmblur.image_io import read_image
from fmblur.resources import verify_file, weights_path


def gallery_path(embedder_name: str) -> Path:
    return weights_path(f"impostors_{embedder_name}.npy")


@functools.cache
def impostor_gallery(embedder_name: str = "dlib") -> np.ndarray:
    """(M, D) float64 embeddings of other people, checked against weights/manifest.json."""
    path = verify_file(f"impostors_{embedder_name}", gallery_path(embedder_name))
    return np.load(path, allow_pickle=False).astype(np.float64)


def build_gallery(embedder_name: str = "dlib", exclude: set[str] | None = None) -> np.ndarray:
    """Embeddings (float16) of the face-mask training faces large enough to embed, minus `exclude` photo names."""

    embedder: FaceEmbedder = create_embedder(embedder_name)
    vectors = []
    for record in load_split("fmd-train"):
        if exclude and record.path.name in exclude:
            continue
        faces = [Face(box=tuple(float(v) for v in box), score=1.0) for box in record.boxes]
        faces = [face for face in faces if measurable(face, embedder)]
        if faces:
            vectors.append(embedder.embed_faces(read_image(record.path)[0], faces))
    return np.concatenate(vectors).astype(np.float16)
