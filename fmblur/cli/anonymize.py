"""`fmblur image` and `fmblur video`: plan the outputs of every input, then anonymise them one by one."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from fmblur.atomic import atomic_target
from fmblur.cli.common import anonymizer_from_args, record_from_args, usage_error
from fmblur.detectors import DetectorUnavailable
from fmblur.image_io import FORMAT_BY_SUFFIX, IMAGE_SUFFIXES, ImageReadError, read_image, write_image
from fmblur.pipeline import Anonymizer
from fmblur.tracking import TrackingOptions
from fmblur.video import VIDEO_SUFFIXES, VideoReadError, anonymize_video


@dataclass
class Job:
    """One input (a file, or a folder played as an image sequence) and where its results go."""

    source: Path
    outputs: dict[str, Path]  # kind ("image", "json", "video", "tracks") -> path


def collect_inputs(
    paths: Sequence[str], out_dir: Path, suffixes: Sequence[str], sequence_folders: bool = False
) -> tuple[list[tuple[Path | None, Path]], list[str]]:
    """(folder root or None, input) pairs, and one error line per path that is neither file nor folder.

    A folder contributes its files with `suffixes`, recursively. With `sequence_folders`, a folder with none
    of those but with images is one input itself: an image sequence.
    """
    found: list[tuple[Path | None, Path]] = []
    errors = []
    out_resolved = out_dir.resolve()
    for given in paths:
        path = Path(given)
        if path.is_dir():
            # Results written into a folder that is also scanned must not be read back as inputs.
            files = [
                file
                for file in sorted(path.rglob("*"))
                if file.is_file() and file.suffix.lower() in suffixes and out_resolved not in file.resolve().parents
            ]
            if files:
                found.extend((path, file) for file in files)
            elif sequence_folders and any(p.suffix.lower() in IMAGE_SUFFIXES for p in path.iterdir()):
                found.append((None, path))
            else:
                errors.append(f"{given}: folder holds no input files")
        elif path.is_file():
            found.append((None, path))
        else:
            errors.append(f"{given}: no such file or folder")
    return found, errors


def plan_jobs(
    inputs: list[tuple[Path | None, Path]],
    out_dir: Path,
    overwrite: bool,
    output_names: Callable[[Path], dict[str, str]],
) -> tuple[list[Job], list[str]]:
    """Output paths for each input: OUT_DIR/<path inside the given folder>/<names from output_names>.

    Refuses (per input) to write over an input, over another input's output, or over an existing file
    unless `overwrite`.
    """
    jobs, errors = [], []
    claimed: dict[Path, Path] = {}
    input_paths = {source.resolve() for _, source in inputs}
    out_root = out_dir.resolve()
    for root, source in inputs:
        relative_dir = source.parent.relative_to(root) if root is not None else Path()
        outputs = {kind: out_dir / relative_dir / name for kind, name in output_names(source).items()}
        problem = None
        for target in outputs.values():
            resolved = target.resolve()
            if not resolved.is_relative_to(out_root):
                # A symlinked subfolder could otherwise send a result outside OUT_DIR.
                problem = f"output {target} would be written outside {out_dir}"
            elif resolved in input_paths:
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
        claimed.update({target.resolve(): source for target in outputs.values()})
        jobs.append(Job(source=source, outputs=outputs))
    return jobs, errors


def _image_output_names(source: Path, with_json: bool) -> dict[str, str]:
    suffix = source.suffix if source.suffix.lower() in FORMAT_BY_SUFFIX else ".png"
    names = {"image": f"{source.stem}{suffix}"}
    if with_json:
        names["json"] = f"{source.stem}.json"
    return names


def _write_json(record: dict, path: Path) -> None:
    with atomic_target(path) as temporary:
        temporary.write_text(json.dumps(record, indent=2))


def run_batch(
    args: argparse.Namespace,
    noun: str,
    suffixes: Sequence[str],
    output_names: Callable[[Path], dict[str, str]],
    process: Callable[[Job, Anonymizer], str | None],
    sequence_folders: bool = False,
    progress_unit: str | None = None,
    tally: Callable[[], str] | None = None,
) -> int:
    """What `fmblur image` and `fmblur video` share: build the pipeline (a bad option is one error line, exit 2),
    plan every input's outputs, run `process` on each job (it returns a line to report, or None; `-q` only hides
    progress bars), count and report failures without stopping the batch, and end with one summary line (plus
    `tally()`, e.g. the faces hidden). `progress_unit`: one progress bar over the jobs (video jobs show their own,
    per frame). Exit 1 if anything failed, 130 on Ctrl-C or SIGTERM (the job under way leaves no output)."""
    out_dir = Path(args.output)
    try:
        anonymizer = anonymizer_from_args(args)
        anonymizer.detector.load()
    except (ValueError, DetectorUnavailable, RuntimeError) as error:
        return usage_error(error)
    inputs, errors = collect_inputs(args.paths, out_dir, suffixes, sequence_folders=sequence_folders)
    jobs, plan_errors = plan_jobs(inputs, out_dir, args.overwrite, output_names)
    errors += plan_errors
    for line in errors:
        print(f"error: {line}", file=sys.stderr)
    failed, written = len(errors), 0
    bar = tqdm(jobs, desc="anonymising", unit=progress_unit, disable=args.quiet or None) if progress_unit else jobs
    for job in bar:
        try:
            line = process(job, anonymizer)
            written += 1
            if line:
                tqdm.write(line, file=sys.stderr)
        except (ImageReadError, VideoReadError, ValueError) as error:
            failed += 1
            tqdm.write(f"error: {error}", file=sys.stderr)
        except KeyboardInterrupt:
            print(f"interrupted: {job.source}: no output written", file=sys.stderr)
            return 130
        except Exception as error:  # one bad file must not stop the batch; it is reported and counted
            failed += 1
            tqdm.write(f"error: {job.source}: {type(error).__name__}: {error}", file=sys.stderr)
    extra = f", {tally()}" if tally else ""
    print(f"{written} {noun}(s) written to {out_dir}{extra}, {failed} failed", file=sys.stderr)
    return 1 if failed else 0


def run_image(args: argparse.Namespace) -> int:
    faces_hidden = 0

    def anonymise_image(job: Job, anonymizer: Anonymizer) -> str | None:
        nonlocal faces_hidden
        image, _ = read_image(job.source)
        result = anonymizer(image)
        image_out = job.outputs["image"]
        write_image(result.image, image_out, FORMAT_BY_SUFFIX[image_out.suffix.lower()])
        if args.json:
            _write_json(result.to_json(), job.outputs["json"])
        faces_hidden += len(result.faces)
        if result.privacy is not None and not args.quiet:
            return f"{job.source.name}: {result.privacy.summary}"
        return None

    return run_batch(
        args,
        "image",
        IMAGE_SUFFIXES,
        lambda source: _image_output_names(source, args.json),
        anonymise_image,
        progress_unit="img",
        tally=lambda: f"{faces_hidden} face(s) hidden",
    )


def _video_output_names(source: Path, tracks_format: str | None, review: bool) -> dict[str, str]:
    names = {"video": f"{source.stem}.mp4"}
    if tracks_format:
        names["tracks"] = f"{source.stem}.tracks.{tracks_format}"
    if review:
        names["review"] = f"{source.stem}.review.json"
    return names


def _tracking_from_args(args: argparse.Namespace) -> TrackingOptions:
    return record_from_args(TrackingOptions, args, enabled=not args.no_tracking)


def run_video(args: argparse.Namespace) -> int:
    try:
        tracking = _tracking_from_args(args)
    except ValueError as error:
        return usage_error(error)

    def anonymise_video(job: Job, anonymizer: Anonymizer) -> str:
        with tqdm(desc=job.source.name, unit="frame", disable=args.quiet or None, dynamic_ncols=True) as bar:

            def advance(done: int, total: int | None) -> None:
                if total is not None and bar.total != total:
                    bar.total = total
                bar.update(done - bar.n)

            report = anonymize_video(
                job.source,
                job.outputs["video"],
                anonymizer,
                tracking,
                start=args.start,
                end=args.end,
                tracks_file=job.outputs.get("tracks"),
                progress=advance,
                sequence_fps=args.sequence_fps,
            )
        if "review" in job.outputs:
            _write_json(
                {"video": str(report.output), "fps": report.input_fps, "review": report.review}, job.outputs["review"]
            )
        inferred = sum(len(item["frames"]) for item in report.review)
        line = (
            f"{job.source}: {report.frames} frames, {report.faces_hidden} regions hidden "
            f"({inferred} frame ranges covered by tracking alone), audio {report.audio}, "
            f"{report.processing_fps:.1f} fps -> {report.output}"
        )
        if report.privacy is not None:
            line += f"; privacy meter (one frame a second): {report.privacy.summary}"
        return line

    return run_batch(
        args,
        "video",
        VIDEO_SUFFIXES,
        lambda source: _video_output_names(source, args.tracks, args.report),
        anonymise_video,
        sequence_folders=True,
    )
