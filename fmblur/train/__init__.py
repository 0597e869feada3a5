"""Training commands (`fmblur train ...`): resumable CPU-friendly runs writing checkpoints under outputs/."""
