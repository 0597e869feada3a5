"""Video benchmarks and checks on the sample clips: fps and peak memory per detector (and deface's), flicker, leaks.

    python -m fmblur.bench video                 # speed and memory table
    python -m fmblur.bench video --checks        # flicker (tracking off/on) and leak check tables
    python -m fmblur.bench video --leaks         # moving-camera clips with known faces: leaks vs deface

Each timed run is a separate process, so peak memory (max RSS) and start-up are counted per run, the same
way for fmblur and for deface.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
import tempfile
from pathlib import Path

import av
import numpy as np

from fmblur.bench.processes import REPO, timed_process

SAMPLES = REPO.parent / "shared" / "data" / "sample_videos"
CLIP_NAMES = (
    "egoblur_gen1_test_video.mp4",
    "egoblur_gen2_test_face_video.mp4",
    "intel_face-demographics-walking.gif",
    "intel_head-pose-face-detection-female.gif",
)
SYNTHETIC = "synthetic_walking_loop_60s.mp4"


def make_synthetic(folder: Path, seconds: float = 60.0) -> Path:
    """A longer clip from a sample: the walking GIF looped, re-timed to 25 fps (memory must stay flat)."""
    target = folder / SYNTHETIC
    if target.exists():
        return target
    with av.open(str(SAMPLES / "intel_face-demographics-walking.gif")) as gif:
        frames = [frame.to_ndarray(format="rgb24") for frame in gif.decode(video=0)]
    with av.open(str(target), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for index in range(int(seconds * 25)):
            # Play forwards then backwards so the loop has no jump cut.
            cycle = index % (2 * len(frames) - 2)
            image = frames[cycle if cycle < len(frames) else 2 * len(frames) - 2 - cycle]
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = index
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return target


def frame_count(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def speed_table(clips: list[Path], detectors: list[str], work: Path, with_deface: bool) -> str:
    lines = ["| clip | frames | runner | fps (end to end) | peak memory MB |", "|---|---|---|---|---|"]
    for clip in clips:
        frames = frame_count(clip)
        runners = [
            (
                name,
                [
                    sys.executable,
                    "-m",
                    "fmblur",
                    "video",
                    str(clip),
                    "-o",
                    str(work / name),
                    "-q",
                    "--detector",
                    name,
                    "--overwrite",
                ],
            )
            for name in detectors
        ]
        if with_deface and clip.suffix == ".mp4" and shutil.which("deface"):
            runners.append(("deface (CenterFace)", ["deface", str(clip), "-o", str(work / f"deface_{clip.name}")]))
        for label, command in runners:
            seconds, memory, code = timed_process(command)
            fps = f"{frames / seconds:.1f}" if code == 0 else "failed"
            lines.append(f"| {clip.name} | {frames} | {label} | {fps} | {memory:.0f} |")
            print(lines[-1], file=sys.stderr, flush=True)
    return "\n".join(lines)


def _regions_by_frame(tracks_csv: Path) -> dict[int, np.ndarray]:
    rows: dict[int, list[list[float]]] = {}
    for line in tracks_csv.read_text().splitlines()[1:]:
        parts = line.split(",")
        rows.setdefault(int(parts[0]), []).append([float(v) for v in parts[4:8]])
    return {frame: np.asarray(boxes) for frame, boxes in rows.items()}


def count_flicker(regions: dict[int, np.ndarray], frames: int) -> int:
    """Frames where a region covered in both the previous and the next frame has no cover in this one."""
    from fmblur.geometry import iou_matrix

    empty = np.zeros((0, 4))
    flicker = 0
    for t in range(1, frames - 1):
        before, now, after = (regions.get(t + d, empty) for d in (-1, 0, 1))
        if len(before) == 0 or len(after) == 0:
            continue
        persistent = before[(iou_matrix(before, after) > 0.3).any(axis=1)] if len(after) else empty
        if len(persistent) == 0:
            continue
        covered_now = (iou_matrix(persistent, now) > 0.3).any(axis=1) if len(now) else np.zeros(len(persistent), bool)
        flicker += int(not covered_now.all())
    return flicker


def count_leaks(source: Path, output: Path, hidden: dict[int, np.ndarray]) -> tuple[int, int]:
    """Frames where a strong detector (RetinaFace, threshold 0.3, 1.5x enlarged) finds a face at the same place
    in input and output, split by cause: (frames where that place was not hidden at all: a detector miss or a
    false positive; frames where it was hidden and is still detectable through the obfuscation)."""
    from fmblur.detectors import create_detector
    from fmblur.geometry import iou_matrix, match_detections

    strong = create_detector("retinaface", threshold=0.3, scale=1.5)
    not_hidden = still_detectable = 0
    with av.open(str(source)) as original, av.open(str(output)) as result:
        for index, (before, after) in enumerate(zip(original.decode(video=0), result.decode(video=0), strict=False)):
            found_in = strong.detect(before.to_ndarray(format="rgb24"))
            found_out = strong.detect(after.to_ndarray(format="rgb24"))
            if not found_in or not found_out:
                continue
            truth = np.array([f.box for f in found_in], np.float32)
            boxes = np.array([f.box for f in found_out], np.float32)
            matched = match_detections(truth, boxes, np.array([f.score for f in found_out]), iou=0.3)
            leaked = truth[matched >= 0]
            if len(leaked) == 0:
                continue
            regions = hidden.get(index, np.zeros((0, 4)))
            was_hidden = (
                (iou_matrix(leaked, regions) > 0.3).any(axis=1) if len(regions) else np.zeros(len(leaked), bool)
            )
            not_hidden += int((~was_hidden).any())
            still_detectable += int(was_hidden.any())
    return not_hidden, still_detectable


def checks_table(clips: list[Path], work: Path, detector: str) -> str:
    from fmblur.pipeline import Anonymizer
    from fmblur.tracking import TrackingOptions
    from fmblur.video import anonymize_video

    anonymizer = Anonymizer(detector)
    lines = [
        "| clip | frames | flicker frames, tracking off / on | leak frames, not hidden, off / on "
        "| leak frames, hidden but still detectable, off / on |",
        "|---|---|---|---|---|",
    ]
    for clip in clips:
        flicker, not_hidden, detectable = [], [], []
        for enabled in (False, True):
            name = f"{clip.stem}_{'on' if enabled else 'off'}"
            report = anonymize_video(
                clip,
                work / f"{name}.mp4",
                anonymizer,
                TrackingOptions(enabled=enabled),
                tracks_file=work / f"{name}.csv",
            )
            regions = _regions_by_frame(work / f"{name}.csv")
            flicker.append(count_flicker(regions, report.frames))
            missed, seen = count_leaks(clip, report.output, regions)
            not_hidden.append(missed)
            detectable.append(seen)
        lines.append(
            f"| {clip.name} | {report.frames} | {flicker[0]} / {flicker[1]} | {not_hidden[0]} / {not_hidden[1]} "
            f"| {detectable[0]} / {detectable[1]} |"
        )
        print(lines[-1], file=sys.stderr, flush=True)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    from fmblur.detectors import available_detector_names, detector_names

    parser = argparse.ArgumentParser(
        prog="python -m fmblur.bench video", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    singles = [name for name in available_detector_names() if name not in ("ensemble", "fast")]
    parser.add_argument("--detectors", nargs="+", default=singles, choices=detector_names())
    parser.add_argument("--no-deface", action="store_true", help="skip the deface comparison")
    parser.add_argument("--checks", action="store_true", help="flicker and leak tables instead of speed")
    parser.add_argument("--check-detector", default="retinaface", help="detector used by --checks")
    parser.add_argument("--keep", metavar="DIR", help="keep outputs in DIR (default: a temporary folder)")
    parser.add_argument("--leaks", action="store_true", help="the leak benchmark on generated moving-camera clips")
    parser.add_argument(
        "--presets",
        nargs="+",
        default=["default", "fast", "thorough"],
        help="fmblur runs for --leaks: a preset or `default` (no --detector), optionally with `fmblur video` "
        "options (quoted)",
    )
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each --leaks clip")
    parser.add_argument("--clips", type=int, default=3, help="number of --leaks clips (the last one at 1080p)")
    parser.add_argument("--write", action="store_true", help="with --leaks: write docs/results/video-leaks.md")
    args = parser.parse_args(argv)
    if args.leaks:
        from fmblur.bench.leaks import leak_table, write_results
        from fmblur.provenance import provenance

        work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="fmblur-leaks-"))
        work.mkdir(parents=True, exist_ok=True)
        try:
            measured = provenance()  # the tree the runs use: taken before they start, not when they are done
            table = leak_table(args.presets, args.seconds, args.clips, work)
            print(table)
            if args.write:
                command = "python -m fmblur.bench video " + shlex.join(argv if argv is not None else sys.argv[1:])
                print(f"written {write_results(table, command, measured)}", file=sys.stderr)
        finally:
            if not args.keep:
                shutil.rmtree(work, ignore_errors=True)
        return
    if not SAMPLES.is_dir():
        parser.error(f"sample clips not found at {SAMPLES}")
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="fmblur-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    clips = [SAMPLES / name for name in CLIP_NAMES]
    try:
        if args.checks:
            print(checks_table(clips, work, args.check_detector))
        else:
            clips.append(make_synthetic(work))
            print(f"{os.cpu_count()} CPU cores; fps = frames / wall time of the whole command (start-up included)\n")
            print(speed_table(clips, args.detectors, work, not args.no_deface))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
