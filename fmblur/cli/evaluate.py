"""`fmblur eval`: detectors, landmark sources and the privacy/utility sweep on annotated faces."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fmblur.atomic import atomic_target
from fmblur.cli.common import (
    LANDMARK_CACHE,
    _odd_kernel,
    bar_factory,
    usage_error,
)
from fmblur.detectors import DetectorUnavailable, available_detector_names, detector_names
from fmblur.landmarks import landmark_source_names
from fmblur.pipeline import Anonymizer


def run_eval_landmarks(args: argparse.Namespace) -> int:
    from fmblur.eval.landmarks import evaluate_landmarks, markdown_tables

    data = args.data or ["fmd-val", "wider-val"]
    try:
        report = evaluate_landmarks(args.source, data, LANDMARK_CACHE, bar_factory())
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        return usage_error(error)
    out_dir = Path(args.output)
    table = markdown_tables(report)
    for suffix, text in ((".json", json.dumps(report, indent=2)), (".md", table)):
        with atomic_target(out_dir / f"landmarks{suffix}") as temporary:
            temporary.write_text(text)
    print(table)
    print(f"written: {out_dir / 'landmarks.json'}, {out_dir / 'landmarks.md'}", file=sys.stderr)
    return 0


def run_eval_privacy(args: argparse.Namespace) -> int:
    from fmblur.eval import privacy

    data = args.data or ["fmd-val", "wider-val"]
    configs = privacy.settings(args.kernels or privacy.KERNELS, args.mask_scales or privacy.MASK_SCALES, args.grains)
    try:
        report = privacy.evaluate_privacy(data, configs, progress_factory=bar_factory())
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        return usage_error(error)
    out_dir = Path(args.output)
    table = privacy.markdown_table(report)
    for suffix, text in ((".json", json.dumps(report, indent=2)), (".md", table)):
        with atomic_target(out_dir / f"privacy{suffix}") as temporary:
            temporary.write_text(text)
    with atomic_target(out_dir / "privacy.png", suffix=".png") as temporary:
        privacy.plot(report, temporary)
    print(table)
    print(f"written: {out_dir}/privacy.json, .md, .png", file=sys.stderr)
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from fmblur.eval.detection import darkener, evaluate, markdown_table, merged_report, save_report

    if args.what == "landmarks":
        return run_eval_landmarks(args)
    if args.what == "privacy":
        return run_eval_privacy(args)

    transforms = []
    if args.gamma != 1.0:
        transforms.append(darkener(args.gamma))
    if args.anonymized:
        # The images as fmblur's defaults leave them: how many faces does each detector still find?
        anonymizer = Anonymizer()
        transforms.append(lambda image: anonymizer(image).image)

    def transform(image):
        for step in transforms:
            image = step(image)
        return image

    out_dir = Path(args.output)
    for data in args.data or ["fmd-val"]:
        try:
            report = evaluate(
                args.detector,
                data,
                transform=transform if transforms else None,
                progress_factory=bar_factory(f"{data}: "),
            )
        except (ValueError, FileNotFoundError, DetectorUnavailable) as error:
            return usage_error(error)
        stem = Path(data).name.replace(".", "_") + ("_anonymized" if args.anonymized else "")
        stem += f"_gamma{args.gamma:g}" if args.gamma != 1.0 else ""
        earlier = out_dir / f"{stem}.json"
        if args.merge and earlier.is_file():
            try:
                report = merged_report(report, json.loads(earlier.read_text()))
            except ValueError as error:
                return usage_error(error)
        paths = save_report(report, out_dir, stem)
        print(markdown_table(report) + "\n")
        print("written: " + ", ".join(str(p) for p in paths), file=sys.stderr)
    return 0


def add_eval_parser(commands) -> None:
    evaluation = commands.add_parser(
        "eval",
        help="measure detectors (default) or landmark sources on annotated faces",
        description="fmblur eval [detectors] --detector ... | fmblur eval landmarks --source ...",
    )
    evaluation.add_argument(
        "what", nargs="?", choices=("detectors", "landmarks", "privacy"), default="detectors", help="what to measure"
    )
    evaluation.add_argument(
        "--kernels", nargs="+", type=_odd_kernel, default=None, help="kernels of the privacy sweep (default 5..65)"
    )
    evaluation.add_argument(
        "--mask-scales", nargs="+", type=float, default=None, help="mask scales of the privacy sweep (1.0 1.3 1.6)"
    )
    evaluation.add_argument(
        "--grains",
        nargs="+",
        type=float,
        default=(),
        help="also sweep the default blurs with these grains (noise sigma, grey levels)",
    )
    evaluation.add_argument(
        "--source",
        nargs="+",
        default=["resnet18", "dlib68"],
        choices=landmark_source_names(),
        help="landmark sources (eval landmarks)",
    )
    evaluation.add_argument(
        "--detector",
        nargs="+",
        default=available_detector_names(),
        choices=detector_names(),
        help="detectors or presets (default: all whose weights are here)",
    )
    evaluation.add_argument(
        "--data",
        nargs="+",
        default=None,
        help="fmd-val, wider-val, a folder of VOC XMLs or a WIDER txt (default: fmd-val; landmarks: both val splits)",
    )
    evaluation.add_argument("--anonymized", action="store_true", help="evaluate on the images after fmblur")
    evaluation.add_argument(
        "--gamma", type=float, default=1.0, help="darken every image by this gamma first (2.2: a low-light copy)"
    )
    evaluation.add_argument("-o", "--output", default="outputs/eval", help="folder for JSON, markdown and PR PNG")
    evaluation.add_argument(
        "--merge",
        action="store_true",
        help="keep the other detectors of the split's report already in --output (each with its own date)",
    )
    evaluation.set_defaults(run=run_eval)
