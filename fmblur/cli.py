"""The `fmblur` command line: a thin layer over fmblur.pipeline."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from tqdm import tqdm

from fmblur.detectors import DetectorUnavailable, detector_names
from fmblur.image_io import FORMAT_BY_SUFFIX, IMAGE_SUFFIXES, ImageReadError, read_image, write_image
from fmblur.landmarks import landmark_source_names
from fmblur.obfuscate import KERNEL_RANGE, MODES, SHAPES, ObfuscationConfig
from fmblur.pipeline import DEFAULT_DETECTOR, DEFAULT_LANDMARKS, Anonymizer


def _odd_kernel(text: str) -> int:
    value = int(text)
    low, high = KERNEL_RANGE
    if not (low <= value <= high) or value % 2 == 0:
        raise argparse.ArgumentTypeError(f"must be an odd number from {low} to {high}")
    return value


def _unit_float(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return value


def _rgb(text: str) -> tuple[int, int, int]:
    parts = text.split(",")
    if len(parts) != 3 or not all(p.strip().isdigit() and 0 <= int(p) <= 255 for p in parts):
        raise argparse.ArgumentTypeError("must be R,G,B with values 0..255, e.g. 0,0,0")
    return tuple(int(p) for p in parts)  # type: ignore[return-value]


def add_pipeline_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by every command that anonymises (images now, video later)."""
    defaults = ObfuscationConfig()
    group = parser.add_argument_group("detection")
    group.add_argument("--detector", default=DEFAULT_DETECTOR, choices=detector_names(), help="face detector")
    group.add_argument("--thresh", type=_unit_float, default=None, help="score threshold (default: the detector's)")
    group.add_argument("--scale", type=float, default=1.0, help="detect on a copy resized by this factor")
    group.add_argument(
        "--upscale-to", type=int, default=800, help="enlarge smaller images to this longer side for detection (0: off)"
    )
    group.add_argument(
        "--landmarks", default=DEFAULT_LANDMARKS, choices=landmark_source_names(), help="landmark source"
    )
    group = parser.add_argument_group("obfuscation")
    group.add_argument("--mode", default=defaults.mode, choices=MODES, help="how faces are hidden")
    group.add_argument(
        "--kernel", type=_odd_kernel, default=None, help="fixed Gaussian kernel, odd 5..65 (default: relative)"
    )
    group.add_argument(
        "--kernel-rel",
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
    group.add_argument("--fill", type=_rgb, default=defaults.fill_color, help="solid fill colour R,G,B")
    group.add_argument("--shape", default=defaults.shape, choices=SHAPES, help="region shape")
    group.add_argument(
        "--mask-scale", type=float, default=defaults.mask_scale, help="grow each face box by this factor"
    )
    group.add_argument(
        "--feather", type=float, default=defaults.feather, help="soft inner edge, fraction of region size"
    )


def anonymizer_from_args(args: argparse.Namespace) -> Anonymizer:
    """Build the pipeline; bad option values raise ValueError with the reason."""
    obfuscation = ObfuscationConfig(
        mode=args.mode,
        kernel=args.kernel,
        kernel_relative=args.kernel_rel,
        feature_kernel=args.feature_kernel,
        mosaic_blocks=args.mosaic_blocks,
        fill_color=args.fill,
        shape=args.shape,
        mask_scale=args.mask_scale,
        feather=args.feather,
    )
    return Anonymizer(
        args.detector,
        args.landmarks,
        obfuscation,
        threshold=args.thresh,
        scale=args.scale,
        upscale_to=args.upscale_to,
    )


@dataclass
class Job:
    """One input file and where its results go."""

    source: Path
    image_out: Path
    json_out: Path


def collect_inputs(paths: Sequence[str], out_dir: Path) -> tuple[list[Path | tuple[Path, Path]], list[str]]:
    """Inputs as (file) or (folder root, file) pairs, and one error line per path that is neither."""
    found: list[Path | tuple[Path, Path]] = []
    errors = []
    out_resolved = out_dir.resolve()
    for given in paths:
        path = Path(given)
        if path.is_dir():
            for file in sorted(path.rglob("*")):
                # Results written into a folder that is also scanned must not be read back as inputs.
                if (
                    file.is_file()
                    and file.suffix.lower() in IMAGE_SUFFIXES
                    and out_resolved not in file.resolve().parents
                ):
                    found.append((path, file))
        elif path.is_file():
            found.append(path)
        else:
            errors.append(f"{given}: no such file or folder")
    return found, errors


def plan_jobs(inputs: list[Path | tuple[Path, Path]], out_dir: Path, overwrite: bool) -> tuple[list[Job], list[str]]:
    """Output paths for each input: OUT_DIR/<path inside the given folder>/<stem>.<ext> and <stem>.json.

    Refuses (per file) to write over an input, over another input's output, or over an existing file
    unless `overwrite`.
    """
    jobs, errors = [], []
    claimed: dict[Path, Path] = {}
    input_paths = {(item[1] if isinstance(item, tuple) else item).resolve() for item in inputs}
    for item in inputs:
        root, source = item if isinstance(item, tuple) else (None, item)
        relative_dir = source.parent.relative_to(root) if root is not None else Path()
        suffix = source.suffix if source.suffix.lower() in FORMAT_BY_SUFFIX else ".png"
        image_out = out_dir / relative_dir / f"{source.stem}{suffix}"
        json_out = out_dir / relative_dir / f"{source.stem}.json"
        problem = None
        for target in (image_out, json_out):
            resolved = target.resolve()
            if resolved in input_paths:
                problem = f"output {target} would overwrite an input"
            elif resolved in claimed:
                problem = f"output {target} would also be written for {claimed[resolved]}; rename one of them"
            elif target.exists() and not overwrite:
                problem = f"output {target} exists (use --overwrite to replace it)"
            if problem:
                break
        if problem:
            errors.append(f"{source}: {problem}")
            continue
        claimed[image_out.resolve()] = source
        claimed[json_out.resolve()] = source
        jobs.append(Job(source=source, image_out=image_out, json_out=json_out))
    return jobs, errors


def _write_json(record: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as stream:
            json.dump(record, stream, indent=2)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def run_image(args: argparse.Namespace) -> int:
    out_dir = Path(args.output)
    try:
        anonymizer = anonymizer_from_args(args)
        anonymizer.detector.load()
    except (ValueError, DetectorUnavailable) as error:
        print(f"fmblur: error: {error}", file=sys.stderr)
        return 2
    inputs, errors = collect_inputs(args.paths, out_dir)
    jobs, plan_errors = plan_jobs(inputs, out_dir, args.overwrite)
    errors += plan_errors
    for line in errors:
        print(f"error: {line}", file=sys.stderr)
    failed = len(errors)
    written = faces_total = 0
    progress = tqdm(jobs, desc="anonymising", unit="img", disable=args.quiet or None)
    for job in progress:
        try:
            image, _ = read_image(job.source)
            result = anonymizer(image)
            write_image(result.image, job.image_out, FORMAT_BY_SUFFIX[job.image_out.suffix.lower()])
            if args.json:
                _write_json(result.to_json(), job.json_out)
            written += 1
            faces_total += len(result.faces)
            progress.set_postfix(faces=faces_total)
        except ImageReadError as error:
            failed += 1
            tqdm.write(f"error: {error}", file=sys.stderr)
        except Exception as error:  # one bad file must not stop the batch; it is reported and counted
            failed += 1
            tqdm.write(f"error: {job.source}: {type(error).__name__}: {error}", file=sys.stderr)
    print(f"{written} image(s) written to {out_dir}, {faces_total} face(s) hidden, {failed} failed", file=sys.stderr)
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fmblur", description="Anonymise faces, masked or not, in images.")
    commands = parser.add_subparsers(dest="command", required=True)
    image = commands.add_parser("image", help="anonymise image files or folders (recursive)")
    image.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders")
    image.add_argument("-o", "--output", required=True, metavar="OUT_DIR", help="folder for the results")
    image.add_argument("--json", action="store_true", help="also write OUT_DIR/<stem>.json with faces and timings")
    image.add_argument("--overwrite", action="store_true", help="replace results of an earlier run")
    image.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_pipeline_arguments(image)
    image.set_defaults(run=run_image)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
