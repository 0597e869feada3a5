"""Every file fmblur ships, found one way whether installed or in a checkout, and checked before it is used.

- Weights live in the package folder `fmblur/weights/` (in a checkout a link to the repository's `weights/`;
  a wheel or sdist carries the files themselves), found through `importlib.resources`, so a non-editable
  install works from any folder. `FMBLUR_WEIGHTS=DIR` points at a folder of one's own instead (it needs its
  own manifest.json).
- Every weight file is checked against the folder's manifest.json (SHA-256) before it is loaded: a tampered
  or swapped file (a different package version, a modified wheel) is refused with a clear error instead of
  being run. Torch checkpoints are loaded with weights_only=True: no pickled code is executed.
- Example photos (with their VOC annotations) live in `fmblur/examples/` the same way.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import json
import os
from pathlib import Path

WEIGHTS_ENV = "FMBLUR_WEIGHTS"
MANIFEST_NAME = "manifest.json"


class WeightsIntegrityError(RuntimeError):
    """A weight file is missing from the manifest or does not match its recorded SHA-256."""


def _package_folder(name: str) -> Path:
    # A wheel is installed as plain files, so the Traversable is a real path; fmblur is never zip-imported.
    return Path(str(importlib.resources.files("fmblur") / name))


def weights_dir() -> Path:
    """The folder of shipped weights, or the one FMBLUR_WEIGHTS names."""
    override = os.environ.get(WEIGHTS_ENV)
    if override:
        folder = Path(override).expanduser()
        if not folder.is_dir():
            raise WeightsIntegrityError(f"{WEIGHTS_ENV}={override} is not a folder")
        return folder
    return _package_folder("weights")


def weights_path(filename: str) -> Path:
    """Where the weight file `filename` is (whether or not it exists)."""
    return weights_dir() / filename


def manifest_path() -> Path:
    return weights_path(MANIFEST_NAME)


def examples_dir() -> Path:
    """The example photos shipped with the package (face-mask data set, CC0, with VOC annotations)."""
    return _package_folder("examples")


@functools.cache
def _manifest(path: Path) -> dict[str, dict]:
    if not path.is_file():
        raise WeightsIntegrityError(f"weights manifest not found at {path}")
    return json.loads(path.read_text())


def expected_sha256(name: str) -> str:
    path = manifest_path()
    try:
        return _manifest(path)[name]["sha256"]
    except KeyError:
        raise WeightsIntegrityError(f"no entry for weights {name!r} in {path}") from None


def verify_bytes(name: str, data: bytes) -> bytes:
    """`data` if its SHA-256 is the manifest's for `name`; WeightsIntegrityError otherwise."""
    digest = hashlib.sha256(data).hexdigest()
    expected = expected_sha256(name)
    if digest != expected:
        raise WeightsIntegrityError(
            f"weights {name!r} do not match {MANIFEST_NAME} (sha256 {digest[:16]}..., expected {expected[:16]}...)"
        )
    return data


def verify_file(name: str, path: str | os.PathLike) -> Path:
    """`path` if the file's SHA-256 is the manifest's for `name`."""
    path = Path(path)
    if not path.is_file():
        raise WeightsIntegrityError(f"weights {name!r} not found at {path}")
    verify_bytes(name, path.read_bytes())
    return path


def record_sha256(name: str, path: Path, source: str) -> str:
    """Add (or replace) `name`'s entry in the manifest beside `path`: the file's SHA-256 and where it came from.
    Used by the trainers' export steps."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    manifest = path.parent / MANIFEST_NAME
    entries = json.loads(manifest.read_text()) if manifest.is_file() else {}
    entries[name] = {"source": source, "sha256": digest}
    manifest.write_text(json.dumps(entries, indent=2) + "\n")
    _manifest.cache_clear()
    return digest
