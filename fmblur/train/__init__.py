"""Training commands (`fmblur train ...`): resumable CPU-friendly runs writing checkpoints under outputs/."""

import os

# albumentations asks PyPI for a newer release at import: a network call in every training process (and a warning
# on machines without internet, such as the GPU machine). The pinned release is the one wanted.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
