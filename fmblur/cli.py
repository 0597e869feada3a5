"""The `fmblur` command line: a thin layer over fmblur.pipeline."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from fmblur.atomic import atomic_target
from fmblur.detectors import DetectorUnavailable, available_detector_names, detector_names
from fmblur.detectors.ensemble import DEFAULT_MEMBERS
from fmblur.detectors.frcnn import BACKBONES, variant_status
from fmblur.device import DEVICES, DeviceUnavailable, select_device
from fmblur.face import LANDMARK_NAMES
from fmblur.image_io import FORMAT_BY_SUFFIX, IMAGE_SUFFIXES, ImageReadError, read_image, write_image
from fmblur.landmarks import landmark_source_names
from fmblur.obfuscate import KERNEL_RANGE, MODES, SHAPES, ObfuscationConfig
from fmblur.pipeline import DEFAULT_DETECTOR, DEFAULT_LANDMARKS, Anonymizer, PipelineOptions, build_anonymizer
from fmblur.resources import manifest_path, record_sha256
from fmblur.tracking import TrackingOptions
from fmblur.train.detector import DetectorTrainingConfig
from fmblur.train.landmarks import LandmarkTrainingConfig
from fmblur.video import VIDEO_SUFFIXES, VideoReadError, anonymize_video


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
    group.add_argument(
        "--detector",
        default=DEFAULT_DETECTOR,
        choices=detector_names(),
        help="face detector or preset (recall-first, fast). The project's Faster R-CNN variants: "
        + "; ".join(variant_status(backbone) for backbone in BACKBONES),
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
    group = parser.add_argument_group("identity (dlib face embeddings)")
    choice = group.add_mutually_exclusive_group()
    choice.add_argument("--keep", nargs="+", metavar="PHOTO", help="leave the people in these photos visible")
    choice.add_argument("--only", nargs="+", metavar="PHOTO", help="hide only the people in these photos")


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


def run_image(args: argparse.Namespace) -> int:
    out_dir = Path(args.output)
    try:
        anonymizer = anonymizer_from_args(args)
        anonymizer.detector.load()
    except (ValueError, DetectorUnavailable, RuntimeError) as error:
        print(f"fmblur: error: {error}", file=sys.stderr)
        return 2
    inputs, errors = collect_inputs(args.paths, out_dir, IMAGE_SUFFIXES)
    jobs, plan_errors = plan_jobs(inputs, out_dir, args.overwrite, lambda s: _image_output_names(s, args.json))
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
            image_out = job.outputs["image"]
            write_image(result.image, image_out, FORMAT_BY_SUFFIX[image_out.suffix.lower()])
            if args.json:
                _write_json(result.to_json(), job.outputs["json"])
            written += 1
            faces_total += len(result.faces)
            progress.set_postfix(faces=faces_total)
            if result.privacy is not None and not args.quiet:
                tqdm.write(f"{job.source.name}: {result.privacy.summary}", file=sys.stderr)
        except ImageReadError as error:
            failed += 1
            tqdm.write(f"error: {error}", file=sys.stderr)
        except Exception as error:  # one bad file must not stop the batch; it is reported and counted
            failed += 1
            tqdm.write(f"error: {job.source}: {type(error).__name__}: {error}", file=sys.stderr)
    print(f"{written} image(s) written to {out_dir}, {faces_total} face(s) hidden, {failed} failed", file=sys.stderr)
    return 1 if failed else 0


def _video_output_names(source: Path, tracks_format: str | None) -> dict[str, str]:
    names = {"video": f"{source.stem}.mp4"}
    if tracks_format:
        names["tracks"] = f"{source.stem}.tracks.{tracks_format}"
    return names


def _tracking_from_args(args: argparse.Namespace) -> TrackingOptions:
    return TrackingOptions(
        enabled=not args.no_tracking,
        hold_frames=args.hold,
        pad=args.pad,
        smoothing=args.smoothing,
        lookback=args.lookback,
        detect_every=args.detect_every,
    )


def run_video(args: argparse.Namespace) -> int:
    out_dir = Path(args.output)
    try:
        anonymizer = anonymizer_from_args(args)
        tracking = _tracking_from_args(args)
        anonymizer.detector.load()
    except (ValueError, DetectorUnavailable, RuntimeError) as error:
        print(f"fmblur: error: {error}", file=sys.stderr)
        return 2
    inputs, errors = collect_inputs(args.paths, out_dir, VIDEO_SUFFIXES, sequence_folders=True)
    jobs, plan_errors = plan_jobs(inputs, out_dir, args.overwrite, lambda s: _video_output_names(s, args.tracks))
    errors += plan_errors
    for line in errors:
        print(f"error: {line}", file=sys.stderr)
    failed, written = len(errors), 0
    for job in jobs:
        bar = tqdm(desc=job.source.name, unit="frame", disable=args.quiet or None, dynamic_ncols=True)

        def advance(done: int, total: int | None, bar: tqdm = bar) -> None:
            if total is not None and bar.total != total:
                bar.total = total
            bar.update(done - bar.n)

        try:
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
            written += 1
            bar.close()
            print(
                f"{job.source}: {report.frames} frames, {report.faces_hidden} regions hidden, audio {report.audio}, "
                f"{report.processing_fps:.1f} fps -> {report.output}",
                file=sys.stderr,
            )
        except (VideoReadError, ValueError) as error:
            bar.close()
            failed += 1
            print(f"error: {error}", file=sys.stderr)
        except KeyboardInterrupt:
            bar.close()
            print(f"interrupted: {job.source}: no output written", file=sys.stderr)
            return 130
        except Exception as error:  # reported and counted; the output was removed by anonymize_video
            bar.close()
            failed += 1
            print(f"error: {job.source}: {type(error).__name__}: {error}", file=sys.stderr)
    print(f"{written} video(s) written to {out_dir}, {failed} failed", file=sys.stderr)
    return 1 if failed else 0


def _interrupt_on_sigterm() -> None:
    """Turn SIGTERM into KeyboardInterrupt so the same clean-up runs as for Ctrl-C."""

    def handler(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def _non_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be zero or more")
    return value


LANDMARK_CACHE = Path("outputs/landmarks/faces")


def _bar_factory(prefix: str = "") -> Callable[[str, int], Callable[[], None]]:
    def factory(name: str, total: int) -> Callable[[], None]:
        bar = tqdm(total=total, desc=f"{prefix}{name}", unit="it", disable=None)
        return lambda: bar.update(1)

    return factory


def run_eval_landmarks(args: argparse.Namespace) -> int:
    from fmblur.eval.landmarks import evaluate_landmarks, markdown_tables

    data = args.data or ["fmd-val", "wider-val"]
    try:
        report = evaluate_landmarks(args.source, data, LANDMARK_CACHE, _bar_factory())
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        print(f"fmblur: error: {error}", file=sys.stderr)
        return 2
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
    configs = privacy.settings(args.kernels or privacy.KERNELS, args.mask_scales or privacy.MASK_SCALES)
    try:
        report = privacy.evaluate_privacy(data, configs, progress_factory=_bar_factory())
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        print(f"fmblur: error: {error}", file=sys.stderr)
        return 2
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


def run_train_landmarks(args: argparse.Namespace) -> int:
    from fmblur.train.landmarks import export, train

    run_dir = Path(args.out)
    if args.export:
        digest = export(
            run_dir,
            Path(args.export),
            manifest_path() if Path(args.export).resolve().parent == manifest_path().resolve().parent else None,
        )
        print(f"written {args.export} (sha256 {digest})")
        return 0
    config = LandmarkTrainingConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        loss=args.loss,
        points=tuple(args.points),
        augment=not args.no_augment,
        weights_backbone=args.weights_backbone,
    )
    try:
        train(
            config,
            run_dir,
            LANDMARK_CACHE,
            log=lambda text: print(text, file=sys.stderr, flush=True),
            progress_factory=_bar_factory(),
        )
    except (ValueError, FileNotFoundError) as error:
        print(f"fmblur: error: {error}", file=sys.stderr)
        return 2
    return 0


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _data_config(args: argparse.Namespace) -> tuple[dict, Path | None]:
    """A trainer's `data` option from --config JSON, and the folder its relative paths start from."""
    if not args.config:
        return {}, None
    config_file = Path(args.config)
    if not config_file.is_file():
        raise FileNotFoundError(f"data config {config_file} not found")
    return {"data": json.loads(config_file.read_text())}, config_file.resolve().parent


def _add_run_arguments(parser: argparse.ArgumentParser, defaults, default_out: str, data_example: str) -> None:
    """The options every resumable trainer takes: data, run folder, length, batch, learning rate, saving."""
    parser.add_argument("--config", metavar="JSON", help=f"data: {data_example}; paths relative to the file")
    parser.add_argument("--out", default=None, help=f"run folder (default {default_out}; resumes)")
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--lr", type=float, default=defaults.learning_rate)
    parser.add_argument(
        "--save-every",
        type=int,
        default=defaults.save_every,
        metavar="STEPS",
        help="checkpoint every this many steps (also at every epoch end and on SIGTERM/Ctrl-C)",
    )


def run_train_detector(args: argparse.Namespace) -> int:
    from fmblur.train.detector import export, train

    run_dir = Path(args.out or f"outputs/detector/{args.backbone}")
    try:
        if args.export:
            print(json.dumps(export(run_dir, manifest_path()), indent=2))
            return 0
        options, data_root = _data_config(args)
        config = DetectorTrainingConfig(
            backbone=args.backbone,
            epochs=args.epochs,
            batch_size=args.batch_size,
            learning_rate=args.lr,
            save_every=args.save_every,
            sizes=tuple(args.sizes),
            augment=not args.no_augment,
            weights_backbone=args.weights_backbone,
            **options,
        )
        train(config, run_dir, log=_log, progress_factory=_bar_factory(), data_root=data_root)
    except (ValueError, FileNotFoundError, json.JSONDecodeError) as error:
        print(f"fmblur: error: {error}", file=sys.stderr)
        return 2
    return 0


def run_train_finetune(args: argparse.Namespace) -> int:
    from fmblur.train.finetune import FinetuneConfig, export_onnx, train

    run_dir = Path(args.out or f"outputs/finetune/{args.base}")
    try:
        if args.export:
            target = manifest_path().parent / f"{args.base}_masked.onnx"
            export_onnx(run_dir, target)
            digest = record_sha256(
                f"{args.base}-masked", target, f"fine-tuned here: fmblur train finetune ({run_dir.name})"
            )
            print(f"written {target} (sha256 {digest})")
            return 0
        options, data_root = _data_config(args)
        config = FinetuneConfig(
            base=args.base,
            epochs=args.epochs,
            batch_size=args.batch_size,
            learning_rate=args.lr,
            save_every=args.save_every,
            **options,
        )
        train(config, run_dir, log=_log, progress_factory=_bar_factory(), data_root=data_root)
    except (ValueError, FileNotFoundError, json.JSONDecodeError) as error:
        print(f"fmblur: error: {error}", file=sys.stderr)
        return 2
    return 0


def run_train_calibration(args: argparse.Namespace) -> int:
    from fmblur.detectors.calibration import calibration_path
    from fmblur.train.calibration import calibrate_ensemble

    try:
        report = calibrate_ensemble(
            Path(args.out),
            Path(args.target or calibration_path()),
            members=tuple(args.members),
            wider_every=args.wider_every,
            progress_factory=lambda total: _bar_factory()("member candidates", total),
        )
    except (ValueError, FileNotFoundError, DetectorUnavailable) as error:
        print(f"fmblur: error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2))
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from fmblur.eval.detection import darkener, evaluate, markdown_table, save_report

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
                progress_factory=_bar_factory(f"{data}: "),
            )
        except (ValueError, FileNotFoundError, DetectorUnavailable) as error:
            print(f"fmblur: error: {error}", file=sys.stderr)
            return 2
        stem = Path(data).name.replace(".", "_") + ("_anonymized" if args.anonymized else "")
        stem += f"_gamma{args.gamma:g}" if args.gamma != 1.0 else ""
        paths = save_report(report, out_dir, stem)
        print(markdown_table(report) + "\n")
        print("written: " + ", ".join(str(p) for p in paths), file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
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
    video.add_argument("--start", type=_non_negative, default=None, help="start time in seconds")
    video.add_argument("--end", type=_non_negative, default=None, help="end time in seconds")
    video.add_argument(
        "--tracks", choices=("csv", "json"), default=None, help="also write OUT_DIR/<stem>.tracks.csv|json"
    )
    video.add_argument("--sequence-fps", type=float, default=25.0, help="frame rate of image-sequence folders")
    video.add_argument("--overwrite", action="store_true", help="replace results of an earlier run")
    video.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    defaults = TrackingOptions()
    group = video.add_argument_group("temporal consistency")
    group.add_argument("--no-tracking", action="store_true", help="hide each frame's detections only")
    group.add_argument("--hold", type=int, default=defaults.hold_frames, help="frames a lost face stays covered")
    group.add_argument("--pad", type=float, default=defaults.pad, help="grow tracked boxes by this share")
    group.add_argument("--smoothing", type=float, default=defaults.smoothing, help="weight of the newest box")
    group.add_argument(
        "--lookback", type=int, default=defaults.lookback, help="also cover a new face this many frames earlier"
    )
    group.add_argument(
        "--detect-every", type=int, default=defaults.detect_every, help="detect on every k-th frame, track between"
    )
    add_pipeline_arguments(video)
    video.set_defaults(run=run_video)

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
    evaluation.set_defaults(run=run_eval)

    training = commands.add_parser("train", help="train the project's models (resumable, CPU or CUDA)")
    models = training.add_subparsers(dest="model", required=True)
    landmarks = models.add_parser("landmarks", help="the ResNet18 landmark regressor, distilled from RetinaFace + dlib")
    defaults = LandmarkTrainingConfig()
    landmarks.add_argument("--out", default="outputs/landmarks/resnet18", help="run folder (resumes if it exists)")
    landmarks.add_argument("--epochs", type=int, default=defaults.epochs)
    landmarks.add_argument("--batch-size", type=int, default=defaults.batch_size)
    landmarks.add_argument("--lr", type=float, default=defaults.learning_rate)
    landmarks.add_argument("--loss", choices=("l2", "wing"), default=defaults.loss)
    landmarks.add_argument(
        "--points", nargs="+", choices=LANDMARK_NAMES, default=list(defaults.points), help="points to regress"
    )
    landmarks.add_argument("--no-augment", action="store_true", help="no box jitter or photometric augmentation")
    landmarks.add_argument(
        "--weights-backbone", choices=("imagenet",), default=None, help="start from ImageNet weights (downloads)"
    )
    landmarks.add_argument("--export", metavar="PT", help="write the run's model (fp16) here instead of training")
    landmarks.set_defaults(run=run_train_landmarks)

    detector = models.add_parser("detector", help="a Faster R-CNN face detector (ResNet50-FPN, VGG16, MobileNetV3)")
    defaults = DetectorTrainingConfig()
    detector.add_argument("--backbone", choices=BACKBONES, default=defaults.backbone)
    _add_run_arguments(
        detector,
        defaults,
        "outputs/detector/<backbone>",
        '{"train": [{"split": "fmd-train"}, {"voc": DIR, "images": DIR}, {"wider": TXT, "images": DIR}, '
        '{"coco": JSON, "images": DIR}], "val": [...]}',
    )
    detector.add_argument(
        "--sizes", type=int, nargs="+", default=list(defaults.sizes), help="training sizes (longest side)"
    )
    detector.add_argument("--no-augment", action="store_true", help="resize only")
    detector.add_argument(
        "--weights-backbone", choices=("imagenet",), default=None, help="start from ImageNet weights (downloads)"
    )
    detector.add_argument("--export", action="store_true", help="write weights/fasterrcnn_<backbone>.pt from the run")
    detector.set_defaults(run=run_train_detector)

    from fmblur.train.finetune import BASES, FinetuneConfig

    finetune = models.add_parser(
        "finetune", help="fine-tune a pretrained detector (RetinaFace) on masked, dark and tiny faces; export ONNX"
    )
    defaults = FinetuneConfig()
    finetune.add_argument("--base", choices=BASES, default=defaults.base)
    _add_run_arguments(
        finetune,
        defaults,
        "outputs/finetune/<base>",
        '{"train": [{"split": "fmd-train", "repeat": 2}, {"voc": DIR, "images": DIR}, {"wider": TXT, "images": DIR}]}',
    )
    finetune.add_argument("--export", action="store_true", help="write weights/<base>_masked.onnx from the run")
    finetune.set_defaults(run=run_train_finetune)

    calibration = models.add_parser(
        "calibration", help="the ensemble's score calibration and threshold, fitted on the training splits"
    )
    calibration.add_argument(
        "--members",
        nargs="+",
        default=list(DEFAULT_MEMBERS),
        metavar="MEMBER",
        help="name, name:mirror, optionally =weight (default: %(default)s)",
    )
    calibration.add_argument("--wider-every", type=int, default=4, help="use every n-th WIDER training photo")
    calibration.add_argument("--out", default="outputs/calibration", help="folder for the candidate cache (resumes)")
    calibration.add_argument(
        "--target", default=None, help="calibration JSON (default weights/ensemble_calibration.json)"
    )
    calibration.set_defaults(run=run_train_calibration)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if hasattr(args, "device"):
        try:
            select_device(args.device)
        except DeviceUnavailable as error:
            print(f"fmblur: error: {error}", file=sys.stderr)
            return 2
    _interrupt_on_sigterm()
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
