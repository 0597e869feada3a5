"""When, where and from which commit a measurement was taken: every results file the eval and bench commands
write carries this, so a figure shown to users can be traced to its run."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from pathlib import Path


def _git(arguments: list[str], repo: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *arguments], cwd=repo, capture_output=True, text=True, timeout=10)


def _commit() -> str:
    """The checkout's commit (with "+changes" when the tree differs from it), or "unknown" outside a checkout."""
    repo = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if head.returncode != 0:
        return "unknown"
    return head.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")


def provenance() -> dict[str, str]:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPU cores, {gpu}",
        "commit": _commit(),
    }


def provenance_line(record: dict[str, str]) -> str:
    return f"measured {record['date']} on {record['machine']}, commit {record['commit']}"
