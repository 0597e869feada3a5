"""`python -m fmblur.space build DIR [--gpu]`: a folder ready to push as a Hugging Face Space (sdk: docker).

The folder holds the app, the package with its weights and examples as real files, the requirements, a
Dockerfile (CPU, or CUDA with onnxruntime's GPU build for `--gpu`), the README with its Space front matter,
and a .gitattributes that stores weights with Git LFS (the Hub refuses files over 10 MB outside LFS).
`python -m fmblur.space check DIR` checks such a folder; `build` runs the check on what it wrote.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import shutil
import sys
from pathlib import Path

import yaml

from fmblur.resources import MANIFEST_NAME, examples_dir, weights_dir

REPO_FILES = ("app.py", "README.md", "LICENSE", "requirements.txt", "requirements-nodeps.txt", "requirements-gpu.txt")
LFS_PATTERNS = ("*.pt", "*.onnx", "*.npy", "*.bin")
HUB_MAX_PLAIN_BYTES = 10 * 1024 * 1024
# The GPU build's base image and device; the CPU build keeps the Dockerfile's defaults.
GPU_BUILD_ARGS = {"BASE_IMAGE": "nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04", "DEVICE": "gpu"}
REQUIRED_FRONT_MATTER = {"title": str, "sdk": str, "app_port": int}


class SpaceError(RuntimeError):
    """The Space folder would not deploy (a missing weight, a large file outside LFS, bad front matter)."""


def _repo_root() -> Path:
    root = Path(__file__).resolve().parents[1]
    if not (root / "app.py").is_file() or not (root / "Dockerfile").is_file():
        raise SpaceError(f"build a Space from a checkout of fmblur (no app.py and Dockerfile beside {root})")
    return root


def build(target: Path, gpu: bool = False) -> list[str]:
    """Write the Space folder into `target` (which must not exist or be empty); return the check's notes."""
    root = _repo_root()
    target = Path(target)
    if target.exists() and any(target.iterdir()):
        raise SpaceError(f"{target} is not empty: choose a new folder")
    target.mkdir(parents=True, exist_ok=True)
    try:
        return _write(root, target, gpu)
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)  # nothing half-written is left to push
        raise


def _write(root: Path, target: Path, gpu: bool) -> list[str]:
    for name in REPO_FILES:
        shutil.copy2(root / name, target / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "weights", "examples")
    shutil.copytree(root / "fmblur", target / "fmblur", ignore=ignore)
    # The package's weights/ and examples/ are links in a checkout; the Space gets the files themselves.
    shutil.copytree(weights_dir(), target / "fmblur" / "weights")
    shutil.copytree(examples_dir(), target / "fmblur" / "examples")
    # The measured figures: the app's labels read docs/results/eval/*.json, the README shows a figure from there.
    shutil.copytree(root / "docs", target / "docs")
    dockerfile = (root / "Dockerfile").read_text()
    if gpu:
        for key, value in GPU_BUILD_ARGS.items():
            dockerfile = _set_build_arg(dockerfile, key, value)
    (target / "Dockerfile").write_text(dockerfile)
    (target / ".gitattributes").write_text(
        "".join(f"{pattern} filter=lfs diff=lfs merge=lfs -text\n" for pattern in LFS_PATTERNS)
    )
    return check(target)


def _set_build_arg(dockerfile: str, key: str, value: str) -> str:
    lines = dockerfile.splitlines()
    for index, line in enumerate(lines):
        if line.startswith(f"ARG {key}="):
            lines[index] = f"ARG {key}={value}"
            return "\n".join(lines) + "\n"
    raise SpaceError(f"the Dockerfile has no `ARG {key}=` line to set")


def front_matter(readme: Path) -> dict:
    text = readme.read_text()
    if not text.startswith("---\n") or "\n---\n" not in text[4:]:
        raise SpaceError(f"{readme} does not start with a --- front matter block")
    data = yaml.safe_load(text[4 : text.index("\n---\n", 4)])
    if not isinstance(data, dict):
        raise SpaceError(f"{readme}: the front matter is not a mapping")
    for key, kind in REQUIRED_FRONT_MATTER.items():
        if not isinstance(data.get(key), kind):
            raise SpaceError(f"{readme}: front matter needs {key} ({kind.__name__})")
    if data["sdk"] != "docker":
        raise SpaceError(
            f"{readme}: sdk must be docker (the Dockerfile installs the pinned packages), not {data['sdk']}"
        )
    return data


def _lfs_patterns(folder: Path) -> list[str]:
    attributes = folder / ".gitattributes"
    if not attributes.is_file():
        return []
    return [line.split()[0] for line in attributes.read_text().splitlines() if "filter=lfs" in line]


def check(folder: Path) -> list[str]:
    """SpaceError on the first problem; otherwise a few lines saying what was checked."""
    folder = Path(folder)
    data = front_matter(folder / "README.md")
    for name in (*REPO_FILES, "Dockerfile"):
        if not (folder / name).is_file():
            raise SpaceError(f"{folder / name} is missing")
    weights = folder / "fmblur" / "weights"
    manifest = json.loads((weights / MANIFEST_NAME).read_text())
    digests = {hashlib.sha256(path.read_bytes()).hexdigest(): path for path in weights.iterdir() if path.is_file()}
    shipped = {name: entry for name, entry in manifest.items() if not entry["source"].startswith("pip ")}
    for name, entry in shipped.items():
        if entry["sha256"] not in digests:
            raise SpaceError(f"weight {name!r} of {MANIFEST_NAME} has no matching file in {weights}")
    patterns = _lfs_patterns(folder)
    large = 0
    for path in folder.rglob("*"):
        if path.is_symlink():
            raise SpaceError(f"{path} is a link: the Space needs the file itself")
        if path.is_file() and path.stat().st_size > HUB_MAX_PLAIN_BYTES:
            large += 1
            if not any(fnmatch.fnmatch(path.name, pattern) for pattern in patterns):
                raise SpaceError(f"{path} is over 10 MB and no Git LFS rule in .gitattributes covers it")
    return [
        f"front matter: title {data['title']!r}, sdk {data['sdk']}, port {data['app_port']}",
        f"{len(shipped)} weights of {MANIFEST_NAME} present with matching SHA-256",
        f"{large} files over 10 MB, all under Git LFS rules ({', '.join(patterns)})",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fmblur.space", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    build_command = commands.add_parser("build", help="write a Space folder and check it")
    build_command.add_argument("folder", type=Path)
    build_command.add_argument("--gpu", action="store_true", help="CUDA base image and onnxruntime-gpu")
    check_command = commands.add_parser("check", help="check a Space folder")
    check_command.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    try:
        notes = build(args.folder, args.gpu) if args.command == "build" else check(args.folder)
    except (SpaceError, OSError, KeyError, json.JSONDecodeError) as error:
        print(f"fmblur.space: error: {error}", file=sys.stderr)
        return 2
    print("\n".join(notes))
    if args.command == "build":
        print(f"ready: cd {args.folder} && git init && git lfs install && git add . && git commit -m Space, then push")
    return 0


if __name__ == "__main__":
    sys.exit(main())
