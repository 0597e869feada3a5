"""Timing a command the way a user runs it: a separate process, wall time and peak memory included."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def timed_process(command: list[str]) -> tuple[float, float, int]:
    """(wall seconds, peak RSS in MB, exit code) of one child process."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=REPO)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - start
    if process.stderr is not None:
        error_text = process.stderr.read().decode(errors="replace")
        process.stderr.close()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        print(f"  failed ({code}): {' '.join(command)}\n{error_text[-2000:]}", file=sys.stderr)
    return elapsed, usage.ru_maxrss / 1024, code
