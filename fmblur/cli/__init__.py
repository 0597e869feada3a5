"""The `fmblur` command line: a thin layer over fmblur.pipeline, one module per command group."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from fmblur.cli.anonymize import run_image, run_video
from fmblur.cli.common import (
    add_pipeline_arguments,
    detector_name,
    interrupt_on_sigterm,
    non_negative,
    usage_error,
)
from fmblur.cli.evaluate import add_eval_parser
from fmblur.device import DeviceUnavailable, select_device
from fmblur.pipeline import VIDEO_DETECTOR, VIDEO_KEYFRAME_EVERY
from fmblur.tracking import TrackingOptions

# Temporal-consistency flags: (flag, the TrackingOptions field it sets, type, help); defaults come from the record.
TRACKING_FLAGS = (
    ("--hold", "hold_frames", int, "frames a lost face stays covered"),
    ("--pad", "pad", float, "grow tracked boxes by this share"),
    ("--smoothing", "smoothing", float, "weight of the newest box"),
    ("--lookback", "lookback", int, "also cover a new face this many frames before its first detection"),
    ("--lookahead", "lookahead", int, "also cover a lost face this many frames after its last detection"),
    ("--detect-every", "detect_every", int, "detect on every k-th frame, track between"),
    ("--batch", "detect_batch", int, "frames per run of the frame detector (0 = 8 where it runs on CUDA, else 1)"),
    (
        "--detect-threads",
        "detect_threads",
        int,
        "threads running the detectors, each on its own frames (0 = 2 where the detectors can share the cores)",
    ),
    ("--weak-ratio", "weak_ratio", float, "candidates at this share of the threshold are weak evidence (1 = off)"),
    ("--confirm-frames", "confirm_frames", int, "frames in a row that confirm a face seen only weakly"),
    ("--max-gap", "max_gap", int, "cover a face across gaps of up to this many frames"),
    (
        "--keyframe-every",
        "keyframe_every",
        int,
        "also run --keyframe-detector on every k-th frame (0 = off; default %(default)s)",
    ),
    ("--keyframe-detector", "keyframe_detector", detector_name, "the stronger detector of key frames"),
)


TRAIN_HELP = "train the project's models (resumable, CPU or CUDA)"


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The whole command line. `fmblur train`'s options are built only when it is the command (`argv`, default
    sys.argv): they come from the trainers' modules, which import torch (about 3 s that anonymising with the
    ONNX detectors never needs)."""
    parser = argparse.ArgumentParser(prog="fmblur", description="Anonymise faces, masked or not, in images and videos.")
    commands = parser.add_subparsers(dest="command", required=True)
    image = commands.add_parser("image", help="anonymise image files or folders (recursive)")
    image.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders")
    image.add_argument("-o", "--output", required=True, metavar="OUT_DIR", help="folder for the results")
    image.add_argument(
        "--json", action="store_true", help="also write OUT_DIR/<stem>.json with faces, timings and privacy meter"
    )
    image.add_argument("--no-privacy", action="store_true", help="leave the privacy meter out of the JSON")
    image.add_argument("--overwrite", action="store_true", help="replace results of an earlier run")
    image.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_pipeline_arguments(image)
    image.set_defaults(run=run_image)

    video = commands.add_parser("video", help="anonymise videos, animated GIFs or image-sequence folders")
    video.add_argument("paths", nargs="+", metavar="PATH", help="video files, or folders of videos or of frames")
    video.add_argument("-o", "--output", required=True, metavar="OUT_DIR", help="folder for the MP4 results")
    video.add_argument("--start", type=non_negative, default=None, help="start time in seconds")
    video.add_argument("--end", type=non_negative, default=None, help="end time in seconds")
    video.add_argument(
        "--tracks", choices=("csv", "json"), default=None, help="also write OUT_DIR/<stem>.tracks.csv|json"
    )
    video.add_argument("--sequence-fps", type=float, default=25.0, help="frame rate of image-sequence folders")
    video.add_argument("--overwrite", action="store_true", help="replace results of an earlier run")
    video.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    defaults = TrackingOptions()
    group = video.add_argument_group("temporal consistency")
    group.add_argument("--no-tracking", action="store_true", help="hide each frame's detections only")
    for flag, field_name, kind, text in TRACKING_FLAGS:
        group.add_argument(flag, dest=field_name, type=kind, default=getattr(defaults, field_name), help=text)
    video.set_defaults(keyframe_every=VIDEO_KEYFRAME_EVERY)  # the video default: key frames on (see pipeline.py)
    video.add_argument(
        "--report",
        action="store_true",
        help="also write OUT_DIR/<stem>.review.json: the frames where a face was covered without a detection there",
    )
    add_pipeline_arguments(video, default_detector=VIDEO_DETECTOR)
    video.set_defaults(run=run_video)
    add_eval_parser(commands)
    words = list(sys.argv[1:] if argv is None else argv)
    if next((word for word in words if not word.startswith("-")), None) == "train":
        from fmblur.cli.train import add_train_parser

        add_train_parser(commands, TRAIN_HELP)
    else:
        commands.add_parser("train", help=TRAIN_HELP)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser(argv).parse_args(argv)
    if hasattr(args, "device"):
        try:
            select_device(args.device)
        except DeviceUnavailable as error:
            return usage_error(error)
    interrupt_on_sigterm()
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
