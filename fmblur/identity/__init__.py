"""Face identity: embeddings, the privacy meter (can an anonymised face still be recognised?), and choosing
whom to hide (keep or hide only the people in reference photos)."""

from fmblur.identity import dlib_resnet  # noqa: F401  (registers the dlib embedder; dlib itself loads on first use)
from fmblur.identity.embedder import FaceEmbedder, create_embedder, embedder_names

__all__ = ["FaceEmbedder", "create_embedder", "embedder_names"]
