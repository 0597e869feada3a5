"""Every model weight is checked against weights/manifest.json (SHA-256) before it is loaded.

A tampered or swapped file (a different package version, a modified wheel) is refused with a clear error
instead of being run. Torch checkpoints are loaded with weights_only=True: no pickled code is executed.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path

MANIFEST = Path(__file__).resolve().parents[1] / "weights" / "manifest.json"


class WeightsIntegrityError(RuntimeError):
    """A weight file is missing from the manifest or does not match its recorded SHA-256."""


@functools.cache
def _manifest() -> dict[str, dict]:
    if not MANIFEST.is_file():
        raise WeightsIntegrityError(f"weights manifest not found at {MANIFEST}")
    return json.loads(MANIFEST.read_text())


def expected_sha256(name: str) -> str:
    try:
        return _manifest()[name]["sha256"]
    except KeyError:
        raise WeightsIntegrityError(f"no entry for weights {name!r} in {MANIFEST}") from None


def verify_bytes(name: str, data: bytes) -> bytes:
    """`data` if its SHA-256 is the manifest's for `name`; WeightsIntegrityError otherwise."""
    digest = hashlib.sha256(data).hexdigest()
    expected = expected_sha256(name)
    if digest != expected:
        raise WeightsIntegrityError(
            f"weights {name!r} do not match {MANIFEST.name} (sha256 {digest[:16]}..., expected {expected[:16]}...)"
        )
    return data


def verify_file(name: str, path: str | os.PathLike) -> Path:
    """`path` if the file's SHA-256 is the manifest's for `name`."""
    path = Path(path)
    if not path.is_file():
        raise WeightsIntegrityError(f"weights {name!r} not found at {path}")
    verify_bytes(name, path.read_bytes())
    return path
