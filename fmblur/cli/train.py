"""`fmblur train`: the resumable trainers (landmarks, Faster R-CNN, fine-tuning) and the ensemble calibration."""

from __future__ import annotations

import argparse
import functools
import json
from collections.abc import Callable
from pathlib import Path

from fmblur.cli.common import (
    LANDMARK_CACHE,
    _unit_float,
    bar_factory,
    log_to_stderr,
    usage_error,
)
from fmblur.detectors import DetectorUnavailable
from fmblur.detectors.base import fine_tuned_weights_file
from fmblur.detectors.ensemble import DEFAULT_MEMBERS
from fmblur.detectors.frcnn import BACKBONES
from fmblur.face import LANDMARK_NAMES
from fmblur.resources import manifest_path, record_sha256
from fmblur.train.detector import DetectorTrainingConfig
from fmblur.train.landmarks import LandmarkTrainingConfig
from fmblur.train.run_state import publish_history


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
            log=log_to_stderr,
            progress_factory=bar_factory(),
        )
    except (ValueError, FileNotFoundError) as error:
        return usage_error(error)
    return 0


def _data_config(args: argparse.Namespace) -> tuple[dict, Path | None]:
    """A trainer's `data` option from --config JSON, and the folder its relative paths start from."""
    if not args.config:
        return {}, None
    config_file = Path(args.config)
    if not config_file.is_file():
        raise FileNotFoundError(f"data config {config_file} not found")
    return {"data": json.loads(config_file.read_text())}, config_file.resolve().parent


# What --config may hold, as the trainers' help shows it.
DETECTOR_DATA_EXAMPLE = (
    '{"train": [{"split": "fmd-train"}, {"voc": DIR, "images": DIR}, {"wider": TXT, "images": DIR}, '
    '{"coco": JSON, "images": DIR}], "val": [...]}'
)
FINETUNE_DATA_EXAMPLE = (
    '{"train": [{"split": "fmd-train", "repeat": 2}, {"voc": DIR, "images": DIR}, {"wider": TXT, "images": DIR}]}'
)


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


def _run_trainer(args: argparse.Namespace, make_config: Callable[..., object], train: Callable, run_dir: Path) -> int:
    """Build a resumable trainer's config from the options every trainer takes (and its data config), then train;
    bad data or options stop with one error line before any step."""
    try:
        options, data_root = _data_config(args)
        config = make_config(
            epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.lr, save_every=args.save_every, **options
        )
        train(config, run_dir, log=log_to_stderr, progress_factory=bar_factory(), data_root=data_root)
    except (ValueError, FileNotFoundError, json.JSONDecodeError) as error:
        return usage_error(error)
    return 0


def run_train_detector(args: argparse.Namespace) -> int:
    from fmblur.train.detector import export, train

    run_dir = Path(args.out or f"outputs/detector/{args.backbone}")
    if args.export:
        try:
            print(json.dumps(export(run_dir, manifest_path()), indent=2))
        except (ValueError, FileNotFoundError) as error:
            return usage_error(error)
        return 0
    make_config = functools.partial(
        DetectorTrainingConfig,
        backbone=args.backbone,
        sizes=tuple(args.sizes),
        crop=args.crop,
        min_visible=args.min_visible,
        whole_face_p=args.whole_face_p,
        init_weights=args.init,
        workers=args.workers,
        warmup_steps=args.warmup,
        augment=not args.no_augment,
        weights_backbone=args.weights_backbone,
    )
    return _run_trainer(args, make_config, train, run_dir)


def run_train_finetune(args: argparse.Namespace) -> int:
    from fmblur.train.finetune import FinetuneConfig, export_onnx, train
    from fmblur.train.finetune_data import FinetuneAugment

    run_dir = Path(args.out or f"outputs/finetune/{args.base}")
    if args.export:
        target = manifest_path().parent / fine_tuned_weights_file(args.base)
        try:
            export_onnx(run_dir, target)
        except (ValueError, FileNotFoundError) as error:
            return usage_error(error)
        digest = record_sha256(
            f"{args.base}-masked", target, f"fine-tuned here: fmblur train finetune ({run_dir.name})"
        )
        print(f"written {target} (sha256 {digest}); training curves: {publish_history(run_dir, f'{args.base}-masked')}")
        return 0
    return _run_trainer(
        args,
        functools.partial(FinetuneConfig, base=args.base, augment=FinetuneAugment(size=args.size, mask_p=args.mask_p)),
        train,
        run_dir,
    )


def run_train_calibration(args: argparse.Namespace) -> int:
    from fmblur.detectors.calibration import calibration_path
    from fmblur.train.calibration import calibrate_ensemble

    try:
        report = calibrate_ensemble(
            Path(args.out),
            Path(args.target or calibration_path()),
            members=tuple(args.members),
            wider_every=args.wider_every,
            progress_factory=lambda total: bar_factory()("member candidates", total),
        )
    except (ValueError, FileNotFoundError, DetectorUnavailable) as error:
        return usage_error(error)
    print(json.dumps(report, indent=2))
    return 0


def run_train_variant_settings(args: argparse.Namespace) -> int:
    from fmblur.train.variant_settings import fit_variant_settings, fitting_photos, write_to_card

    out = Path(args.out.replace("<backbone>", args.backbone))
    try:
        data = fitting_photos(args.split, args.every)
        fitted = fit_variant_settings(
            args.backbone,
            out,
            data,
            sides=tuple(args.sides),
            budget=args.fp_budget,
            progress_factory=lambda total: bar_factory()(f"frcnn_{args.backbone} passes", total),
            large_floor=args.large_floor,
            confidence=args.fp_confidence,
        )
    except (ValueError, FileNotFoundError, DetectorUnavailable) as error:
        return usage_error(error)
    (out / "fitted.json").write_text(json.dumps(fitted, indent=2) + "\n")
    print(json.dumps(fitted, indent=2))
    label = (
        f"{args.split}, one photo in {args.every} ({len(data)} photos), <= {args.fp_budget} FP per photo in "
        f"{args.fp_confidence:.0%} of bootstrap resamples, passes finding >= {args.large_floor} of the large faces"
    )
    print(f"written: {write_to_card(args.backbone, fitted, label, Path(args.target) if args.target else None)}")
    return 0


def add_train_parser(commands, help_text: str) -> None:
    training = commands.add_parser("train", help=help_text)
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
    _add_run_arguments(detector, defaults, "outputs/detector/<backbone>", DETECTOR_DATA_EXAMPLE)
    detector.add_argument(
        "--sizes", type=int, nargs="+", default=list(defaults.sizes), help="training sizes (longest side)"
    )
    detector.add_argument(
        "--crop", type=int, default=defaults.crop, help="side of the training crops (sizes above it are cropped to it)"
    )
    detector.add_argument(
        "--min-visible",
        type=float,
        default=defaults.min_visible,
        help="share of a face a crop must leave for it to stay a face; faces cut more are painted over (%(default)s)",
    )
    detector.add_argument(
        "--whole-face-p",
        type=float,
        default=defaults.whole_face_p,
        help="share of the crops of resized photos placed to keep one face whole, so large faces are seen whole "
        "and large (%(default)s)",
    )
    detector.add_argument(
        "--init", metavar="PT", default=None, help="start from these weights (e.g. weights/fasterrcnn_<backbone>.pt)"
    )
    detector.add_argument(
        "--workers", type=int, default=defaults.workers, help="processes preparing batches (default %(default)s)"
    )
    detector.add_argument(
        "--warmup", type=int, default=defaults.warmup_steps, metavar="STEPS", help="learning-rate warm-up steps"
    )
    detector.add_argument("--no-augment", action="store_true", help="resize only")
    detector.add_argument(
        "--weights-backbone", choices=("imagenet",), default=None, help="start from ImageNet weights (downloads)"
    )
    detector.add_argument("--export", action="store_true", help="write weights/fasterrcnn_<backbone>.pt from the run")
    detector.set_defaults(run=run_train_detector)

    from fmblur.train.finetune import BASES, FinetuneConfig

    finetune = models.add_parser(
        "finetune",
        help="fine-tune a pretrained detector (RetinaFace, CenterFace) on masked, dark and tiny faces; export ONNX",
    )
    defaults = FinetuneConfig()
    finetune.add_argument("--base", choices=BASES, default=defaults.base)
    _add_run_arguments(finetune, defaults, "outputs/finetune/<base>", FINETUNE_DATA_EXAMPLE)
    finetune.add_argument(
        "--size", type=int, default=defaults.augment.size, help="training crops are SIZE x SIZE pixels"
    )
    finetune.add_argument(
        "--mask-p",
        type=_unit_float,
        default=defaults.augment.mask_p,
        help="chance of a synthetic face mask drawn on an unmasked face with landmarks (default %(default)s)",
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

    from fmblur.train.variant_settings import CANDIDATE_SIDES, FP_CONFIDENCE, LARGE_FLOOR, VARIANT_FP_BUDGET

    variant = models.add_parser(
        "variant-settings",
        help="a Faster R-CNN variant's extra passes (large faces) and default threshold, fitted on training photos",
    )
    variant.add_argument("--backbone", choices=BACKBONES, required=True)
    variant.add_argument("--split", default="fmd-train", help="training split to fit on (default: %(default)s)")
    variant.add_argument("--every", type=int, default=2, help="use every n-th photo of the split")
    variant.add_argument(
        "--sides", type=int, nargs="+", default=list(CANDIDATE_SIDES), help="candidate extra passes (longer side, px)"
    )
    variant.add_argument(
        "--fp-budget", type=float, default=VARIANT_FP_BUDGET, help="false positives per photo allowed (%(default)s)"
    )
    variant.add_argument(
        "--fp-confidence",
        type=float,
        default=FP_CONFIDENCE,
        help="share of bootstrap resamples of the photos that must keep within the budget (%(default)s; 0.5: "
        "on average)",
    )
    variant.add_argument(
        "--large-floor",
        type=float,
        default=LARGE_FLOOR,
        help="share of large (>= 96 px) training faces the chosen passes must find (%(default)s)",
    )
    variant.add_argument(
        "--out", default="outputs/variant_settings/<backbone>", help="folder for the candidate cache (resumes)"
    )
    variant.add_argument("--target", default=None, help="card file (default weights/fasterrcnn_cards.json)")
    variant.set_defaults(run=run_train_variant_settings)
