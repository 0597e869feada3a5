"""What every fmblur command shares: option parsers, the pipeline options, progress bars, signals."""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from fmblur.detectors import detector_names
from fmblur.detectors.ensemble import DEFAULT_MEMBERS
from fmblur.detectors.frcnn import BACKBONES, variant_status
from fmblur.device import DEVICES
from fmblur.landmarks import landmark_source_names
from fmblur.obfuscate import KERNEL_RANGE, MODES, SHAPES, ObfuscationConfig
from fmblur.pipeline import DEFAULT_DETECTOR, DEFAULT_LANDMARKS, Anonymizer, PipelineOptions, build_anonymizer


def _odd_kernel(text: str) -> int:
    value = int(text)
    low, high = KERNEL_RANGE
    if not (low <= value <= high) or value % 2 == 0:
        raise argparse.ArgumentTypeError(f"must be an odd number from {low} to {high}")
    return value


def _unit_float(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def _rgb(text: str) -> tuple[int, int, int]:
    parts = text.split(",")
    if len(parts) != 3 or not all(p.strip().isdigit() and 0 <= int(p) <= 255 for p in parts):
        raise argparse.ArgumentTypeError("must be R,G,B with values 0..255, e.g. 0,0,0")
    return tuple(int(p) for p in parts)  # type: ignore[return-value]


def detector_name(text: str) -> str:
    """A registry detector or preset name (argparse type, for options other than --detector)."""
    if text not in detector_names():
        raise argparse.ArgumentTypeError(f"unknown detector {text!r}; choose from {', '.join(detector_names())}")
    return text


def add_pipeline_arguments(parser: argparse.ArgumentParser, default_detector: str = DEFAULT_DETECTOR) -> None:
    """Options shared by every command that anonymises (images, video: each with its own default detector)."""
    defaults = ObfuscationConfig()
    group = parser.add_argument_group("detection")
    group.add_argument(
        "--detector",
        default=default_detector,
        choices=detector_names(),
        help=f"face detector or preset (thorough, balanced, fast, recall-first; default {default_detector}). "
        "The project's Faster R-CNN variants: " + "; ".join(variant_status(backbone) for backbone in BACKBONES),
    )
    group.add_argument("--thresh", type=_unit_float, default=None, help="score threshold (default: the detector's)")
    group.add_argument("--scale", type=float, default=1.0, help="detect on a copy resized by this factor")
    group.add_argument(
        "--upscale-to",
        type=int,
        default=None,
        help="enlarge smaller images to this longer side for detection (0: off; default 800, 0 for fast)",
    )
    group.add_argument("--flip", action="store_true", help="also detect on the mirrored image")
    group.add_argument("--tile", type=int, default=0, help="also detect on overlapping tiles of this size (px)")
    group.add_argument(
        "--members",
        nargs="+",
        default=None,
        metavar="MEMBER",
        help="for --detector ensemble: name, name:mirror, optionally =weight (default: {})".format(
            " ".join(DEFAULT_MEMBERS)
        ),
    )
    group.add_argument(
        "--landmarks", default=DEFAULT_LANDMARKS, choices=landmark_source_names(), help="landmark source"
    )
    group.add_argument(
        "--device",
        default="auto",
        choices=DEVICES,
        help="where the models run: auto (CUDA when present), cpu, or cuda (an error where there is none)",
    )
    group = parser.add_argument_group("obfuscation")
    group.add_argument("--mode", default=defaults.mode, choices=MODES, help="how faces are hidden")
    group.add_argument(
        "--kernel", type=_odd_kernel, default=None, help="fixed Gaussian kernel, odd 5..65 (default: relative)"
    )
    group.add_argument(
        "--kernel-rel",
        dest="kernel_relative",
        metavar="FRACTION",
        type=float,
        default=defaults.kernel_relative,
        help="kernel as a fraction of each face's size (when no --kernel)",
    )
    group.add_argument(
        "--feature-kernel",
        type=int,
        default=defaults.feature_kernel,
        help="light blur on eyes/nose/mouth in feature mode",
    )
    group.add_argument("--mosaic-blocks", type=int, default=defaults.mosaic_blocks, help="mosaic blocks across a face")
    group.add_argument(
        "--fill", dest="fill_color", type=_rgb, default=defaults.fill_color, help="solid fill colour R,G,B"
    )
    group.add_argument("--shape", default=defaults.shape, choices=SHAPES, help="region shape")
    group.add_argument(
        "--mask-scale", type=float, default=defaults.mask_scale, help="grow each face box by this factor"
    )
    group.add_argument(
        "--feather", type=float, default=defaults.feather, help="soft inner edge, fraction of region size"
    )
    group.add_argument(
        "--grain", type=float, default=defaults.grain, help="noise (grey levels) over blurred regions, 0 = none"
    )
    group.add_argument(
        "--max-similarity",
        type=_unit_float,
        default=defaults.max_similarity,
        help="a blurred or mosaic face box still at least this similar to the original (SSIM) gets block noise "
        "until it is not (default %(default)s; 1 = never)",
    )
    group = parser.add_argument_group("identity (dlib face embeddings)")
    choice = group.add_mutually_exclusive_group()
    choice.add_argument("--keep", nargs="+", metavar="PHOTO", help="leave the people in these photos visible")
    choice.add_argument("--only", nargs="+", metavar="PHOTO", help="hide only the people in these photos")


def anonymizer_from_args(args: argparse.Namespace) -> Anonymizer:
    """Build the pipeline; bad option values raise ValueError with the reason."""
    obfuscation = record_from_args(ObfuscationConfig, args)
    detector_options = {"threshold": args.thresh, "scale": args.scale, "flip": args.flip, "tile": args.tile}
    detector_options["upscale_to"] = args.upscale_to
    if args.members:
        if args.detector != "ensemble":
            raise ValueError("--members is for --detector ensemble (the presets have fixed members)")
        detector_options["members"] = tuple(args.members)
    references = args.keep or args.only or ()
    options = PipelineOptions.create(
        args.detector,
        detector_options=detector_options,
        landmarks=args.landmarks,
        obfuscation=obfuscation,
        whom="keep" if args.keep else "only" if args.only else "everyone",
        references=tuple(references),
        privacy_meter=getattr(args, "json", False) and not getattr(args, "no_privacy", False),
    )
    return build_anonymizer(options)


def interrupt_on_sigterm() -> None:
    """Turn SIGTERM into KeyboardInterrupt so the same clean-up runs as for Ctrl-C."""

    def handler(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def non_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be zero or more")
    return value


LANDMARK_CACHE = Path("outputs/landmarks/faces")


def bar_factory(prefix: str = "") -> Callable[[str, int], Callable[[], None]]:
    def factory(name: str, total: int) -> Callable[[], None]:
        bar = tqdm(total=total, desc=f"{prefix}{name}", unit="it", disable=None)
        return lambda: bar.update(1)

    return factory


def log_to_stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def usage_error(error: Exception | str) -> int:
    """Report a bad option, input or missing model as the one line `fmblur: error: ...`; the exit status 2."""
    print(f"fmblur: error: {error}", file=sys.stderr)
    return 2


def record_from_args(record: type, args: argparse.Namespace, **given):
    """An options record (a dataclass) from the parsed arguments named after its fields; `given` fields win."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(record) if hasattr(args, f.name)}
    return record(**{**values, **given})
