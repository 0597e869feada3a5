"""Load: the app on localhost, N concurrent gradio_client users, a bounded number of requests each.

    python -m fmblur.bench load [--users 8] [--rounds 3]

Each user sends `rounds` image requests and one short-video request, after a warm-up pass of one of each.
Every answer is checked (the example's faces changed, the rest of the photo intact; the video's frames all
there). Prints latencies, errors and the server's memory (RSS) after the warm-up and at the end.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fmblur.resources import examples_dir

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = examples_dir() / "maksssksksss5.jpg"
CLIP = REPO / "tests" / "data" / "selfie_2s_audio.mp4"


# What the load differs in from the app's starting settings, by the handlers' argument names (gradio_client
# fills in the rest from the page's controls): RetinaFace, quick.
APP_SETTINGS = {"detector": "retinaface", "threshold": 0.5}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_app(env_overrides: dict[str, str] | None = None, timeout: float = 180) -> tuple[subprocess.Popen, str]:
    """`python app.py` on a free localhost port; returns once it answers HTTP."""
    port = free_port()
    env = dict(os.environ, GRADIO_SERVER_PORT=str(port), GRADIO_ANALYTICS_ENABLED="False", **(env_overrides or {}))
    server = subprocess.Popen(
        [sys.executable, "app.py"], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + timeout
    while True:
        if server.poll() is not None:
            raise RuntimeError(f"app exited early:\n{server.stdout.read()}")
        try:
            urllib.request.urlopen(url, timeout=5)
            return server, url
        except OSError:
            if time.monotonic() > deadline:
                server.kill()
                raise RuntimeError(f"app did not answer within {timeout:.0f} s") from None
            time.sleep(1)


def stop_app(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()


def rss_mb(pid: int) -> float:
    """Resident memory of a process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@dataclass
class LoadReport:
    latencies_s: dict[str, list[float]] = field(default_factory=lambda: {"image": [], "video": []})
    errors: list[str] = field(default_factory=list)
    rss_after_warmup_mb: float = 0.0
    rss_end_mb: float = 0.0
    wall_s: float = 0.0

    @property
    def requests(self) -> int:
        return sum(len(v) for v in self.latencies_s.values()) + len(self.errors)

    def table(self) -> str:
        lines = ["| request | answered | p50 s | p95 s | max s |", "|---|---|---|---|---|"]
        for kind, values in self.latencies_s.items():
            if values:
                ordered = sorted(values)
                p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
                lines.append(
                    f"| {kind} | {len(values)} | {statistics.median(values):.2f} | {p95:.2f} | {max(values):.2f} |"
                )
        lines.append("")
        lines.append(f"errors: {len(self.errors)}; wall time {self.wall_s:.1f} s")
        lines.append(f"server RSS after warm-up {self.rss_after_warmup_mb:.0f} MB, at the end {self.rss_end_mb:.0f} MB")
        return "\n".join(lines)


def _check_image(result_path: str, original: np.ndarray, boxes: np.ndarray) -> str | None:
    from fmblur.image_io import read_image

    result, _ = read_image(result_path)
    if result.shape != original.shape:
        return f"image shape {result.shape} != {original.shape}"
    for x1, y1, x2, y2 in boxes.astype(int):
        if np.any(result[y1:y2, x1:x2] != original[y1:y2, x1:x2], axis=2).mean() < 0.8:
            return "a face was not hidden"
    if np.all(result == original, axis=2).mean() < 0.6:
        return "too much of the photo changed"
    return None


def _check_video(path: str, frames: int) -> str | None:
    import av

    with av.open(path) as container:
        count = container.streams.video[0].frames
    return None if count == frames else f"video has {count} frames, expected {frames}"


def run_load(url: str, server_pid: int, users: int = 8, rounds: int = 3, with_video: bool = True) -> LoadReport:
    from gradio_client import Client, handle_file

    from fmblur.datasets import read_voc
    from fmblur.image_io import read_image

    original, _ = read_image(EXAMPLE)
    boxes = read_voc(EXAMPLE.with_suffix(".xml")).boxes
    report = LoadReport()
    lock = threading.Lock()
    image_args = APP_SETTINGS

    measuring = False  # the warm-up pass's answers are checked but not timed

    def record(kind: str, started: float, problem: str | None) -> None:
        with lock:
            if problem:
                report.errors.append(f"{kind}: {problem}")
            elif measuring:
                report.latencies_s[kind].append(time.perf_counter() - started)

    def user(image_requests: int) -> None:
        client = Client(url, verbose=False)
        for _ in range(image_requests):
            started = time.perf_counter()
            try:
                _, result, _ = client.predict(path=handle_file(str(EXAMPLE)), **image_args, api_name="/anonymize")
                record("image", started, _check_image(result, original, boxes))
            except Exception as error:  # every failure is counted and reported, none stops the others
                record("image", started, f"{type(error).__name__}: {error}")
        if with_video:
            started = time.perf_counter()
            try:
                video, _, _, _ = client.predict(
                    path=handle_file(str(CLIP)),
                    **image_args,
                    tracking=True,
                    detect_every=1,
                    api_name="/anonymize_video",
                )
                record("video", started, _check_video(video["video"] if isinstance(video, dict) else video, 60))
            except Exception as error:
                record("video", started, f"{type(error).__name__}: {error}")

    def all_users(image_requests: int) -> None:
        threads = [threading.Thread(target=user, args=(image_requests,)) for _ in range(users)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    # Warm-up: every user once (an image and a video each), so the memory baseline holds the models and what the
    # allocator keeps for that many requests at once: the server's RSS grew by ~860 MB in a first concurrent pass
    # and by 1-64 MB in each pass after it (8 users, 2 rounds, 2026-12-05); growth after that would be a leak.
    all_users(1)
    report.rss_after_warmup_mb = rss_mb(server_pid)
    measuring = True
    began = time.perf_counter()
    all_users(rounds)
    report.wall_s = time.perf_counter() - began
    report.rss_end_mb = rss_mb(server_pid)
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m fmblur.bench load", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3, help="image requests per user (plus one video)")
    parser.add_argument("--no-video", action="store_true")
    args = parser.parse_args(argv)
    server, url = start_app()
    try:
        report = run_load(url, server.pid, args.users, args.rounds, not args.no_video)
    finally:
        stop_app(server)
    print(f"{args.users} users x ({args.rounds} images{'' if args.no_video else ' + 1 video'}) against {url}\n")
    print(report.table())
    for error in report.errors[:20]:
        print("error:", error)
