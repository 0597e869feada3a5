"""Milliseconds per image for each detector and for the whole pipeline, at common frame sizes."""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch

from fmblur.atomic import atomic_target
from fmblur.detectors import Detector, available_detector_names, create_detector, detector_names
from fmblur.detectors.presets import PRESETS
from fmblur.image_io import read_image
from fmblur.obfuscate import ObfuscationConfig
from fmblur.pipeline import DEFAULT_DETECTOR, Anonymizer
from fmblur.provenance import provenance, provenance_line
from fmblur.resources import examples_dir

SIZES = ((640, 480), (1280, 720), (1920, 1080))
EXAMPLE_NAME = "maksssksksss21.jpg"


def median_ms(run: Callable[[], object], repeats: int) -> float:
    run()  # warm-up: model load, first-call allocations
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def frames(source: np.ndarray) -> dict[tuple[int, int], np.ndarray]:
    """The example photo resized (stretched) to each benchmark size: real faces, real texture."""
    return {size: cv2.resize(source, size, interpolation=cv2.INTER_LINEAR) for size in SIZES}


def shipped_settings(detector: Detector) -> str:
    """A single-pass detector's test-time views as it ships ("enlarged to 1280 px + passes at 640, 448 px")."""
    options = getattr(getattr(detector, "views", None), "options", None)
    if options is None:
        return "default views"
    parts = [f"enlarged to {options.upscale_to} px" if options.upscale_to else "own size"]
    if options.extra_sides:
        parts.append(f"passes at {', '.join(str(side) for side in options.extra_sides)} px")
    if options.nested_share:
        parts.append(f"nested boxes out at {options.nested_share:.1f}")
    return " + ".join(parts) + f", t={detector.threshold:.2f}"


def benchmark(repeats: int, detectors: list[str], as_shipped: list[str] = ()) -> str:
    source, _ = read_image(examples_dir() / EXAMPLE_NAME)
    inputs = frames(source)
    header = "| what | " + " | ".join(f"{w}x{h}" for w, h in SIZES) + " |"
    lines = [header, "|---" * (len(SIZES) + 1) + "|"]

    def row(label: str, detector: Detector) -> str:
        cells = [f"{median_ms(lambda f=frame, d=detector: d.detect(f), repeats):.0f}" for frame in inputs.values()]
        return f"| {label} | " + " | ".join(cells) + " |"

    for name in detectors:
        # Detection at the frame's own resolution (no auto-upscale), default threshold.
        # (The `fast` preset is exactly this for RetinaFace.)
        lines.append(row(f"detect: {name}", create_detector(name, upscale_to=0)))
    for name in as_shipped:
        # Detection with the detector's own inference settings (the variants' enlargement and extra passes).
        detector = create_detector(name)
        lines.append(row(f"detect as shipped: {name} ({shipped_settings(detector)})", detector))
    for preset in sorted(PRESETS, key=lambda name: name != "fast"):  # fast first: the row the others are read against
        for mode in ("gaussian", "feature") if preset == DEFAULT_DETECTOR else ("gaussian",):
            anonymizer = Anonymizer(preset, obfuscation=ObfuscationConfig(mode=mode))
            cells = [f"{median_ms(lambda f=frame, a=anonymizer: a(f), repeats):.0f}" for frame in inputs.values()]
            lines.append(f"| pipeline: {preset} + {mode} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m fmblur.bench images", description=__doc__)
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per cell (median reported)")
    singles = [name for name in available_detector_names() if name not in (*PRESETS, "ensemble")]
    parser.add_argument("--detectors", nargs="+", default=singles, choices=detector_names())
    parser.add_argument(
        "--as-shipped",
        nargs="+",
        default=[],
        choices=detector_names(),
        help="also time these with their own inference settings (enlargement, extra passes), as the app runs them",
    )
    parser.add_argument("--output", type=Path, default=None, help="also write the table (with provenance) here")
    args = parser.parse_args(argv)
    header = (
        f"ms per image (median of {args.repeats}), {torch.get_num_threads()} torch threads; "
        f"{provenance_line(provenance())}\n"
    )
    table = header + "\n" + benchmark(args.repeats, args.detectors, args.as_shipped)
    print(table)
    if args.output is not None:
        with atomic_target(args.output) as temporary:
            temporary.write_text(table + "\n")
