"""fmblur web app (Gradio Blocks): anonymise a photo or a video, or compare detectors on a photo.

Run `python app.py` and open http://127.0.0.1:7860. It runs on the CPU (CUDA when present) with the
detectors whose weights ship in pip packages: nothing is downloaded.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

# Offline by design: no usage analytics calls home (set before gradio is imported).
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr
import numpy as np
import pandas as pd
import torch

from fmblur.compare import compare, ground_truth_for
from fmblur.detectors import DetectorUnavailable, available_detector_names, detector_class, detector_names
from fmblur.detectors.presets import PRESETS
from fmblur.device import onnx_providers, resolved_device, select_device, selected_device
from fmblur.draw import draw_faces
from fmblur.image_io import ImageReadError, read_image, write_image
from fmblur.landmarks import landmark_source_names
from fmblur.obfuscate import KERNEL_RANGE, MODES, SHAPES, ObfuscationConfig
from fmblur.pipeline import (
    DEFAULT_DETECTOR,
    DEFAULT_LANDMARKS,
    VIDEO_DETECTOR,
    VIDEO_KEYFRAME_EVERY,
    Anonymizer,
    PipelineOptions,
    PipelineResult,
    build_anonymizer,
)
from fmblur.resources import examples_dir
from fmblur.results import (
    SPLIT_NAMES,
    detector_summaries,
    measured_table,
    menu_labels,
    pr_curves,
    privacy_sweep,
    training_curves,
)
from fmblur.tracking import TrackingOptions
from fmblur.video import VideoReadError, anonymize_video, review_thumbnails, video_duration

EXAMPLES_DIR = examples_dir()
EXAMPLES = sorted(str(p) for p in EXAMPLES_DIR.glob("*.jpg"))
# Limits of the web app, all here and all shown on the page. The CLI has none of them.
MAX_UPLOAD_MB = 50  # uploads above this are refused by the server before any work is done
MAX_VIDEO_SECONDS = 120  # longer videos are refused before decoding starts: use the CLI for those
CONCURRENCY_LIMIT = 2  # CPU work is queued: at most this many requests run at once, the rest wait
# Gradio's cached uploads and results: every 10 minutes, files older than 30 minutes are deleted.
CACHE_CLEANUP = (600, 1800)
# A request's own working folder is deleted this many seconds after the request returned (by then Gradio
# has copied the results into its cache).
RESULT_FOLDER_SECONDS = 5
# Whom to hide: everyone (default), everyone except the people in the reference photos, or only them.
EVERYONE = "Everyone"
KEEP_REFERENCES = "Everyone except the reference people"
ONLY_REFERENCES = "Only the reference people"
# The controls' starting values, named as the handlers' arguments (gradio_client callers pass what they change
# by these names). Obfuscation starts from the library's own defaults, as the CLI does.
_OBFUSCATION = ObfuscationConfig()
APP_SETTINGS = {
    "detector": DEFAULT_DETECTOR,
    "threshold": None,  # the detector's own default threshold
    "landmarks": DEFAULT_LANDMARKS,
    "mode": _OBFUSCATION.mode,
    "kernel": 45,  # the fixed kernel offered when "relative" is switched off
    "relative_kernel": _OBFUSCATION.kernel is None,
    "shape": _OBFUSCATION.shape,
    "mask_scale": _OBFUSCATION.mask_scale,
    "people": EVERYONE,
    "references": None,
}
# The Video tab starts from the video default: one fast pass per frame, key frames through DEFAULT_DETECTOR.
VIDEO_SETTINGS = {**APP_SETTINGS, "detector": VIDEO_DETECTOR}
CONTROL_TYPES = {
    "detector": str,
    "threshold": float | None,
    "landmarks": str,
    "mode": str,
    "kernel": int,
    "relative_kernel": bool,
    "shape": str,
    "mask_scale": float,
    "people": str,
    "references": list | None,
}
LIMITS_TEXT = (
    f"Limits: uploads up to {MAX_UPLOAD_MB} MB, videos up to {MAX_VIDEO_SECONDS} s; "
    f"{CONCURRENCY_LIMIT} requests run at once, others wait in the queue."
)


class UploadedImage(gr.Image):
    """An image upload handed to the app as a file path, read by fmblur itself.

    Gradio opens uploads with Pillow before the app sees them; a file that is not an image would fail
    there with a generic error. Here it becomes the same one-line message the CLI prints.
    Only `preprocess` differs from gr.Image (the browser renders it as one; its settings are gr.Image's).
    """

    is_template = True

    def preprocess(self, payload):  # type: ignore[override]
        try:
            return super().preprocess(payload)
        except Exception:
            name = getattr(payload, "orig_name", None) or "upload"
            raise gr.Error(f"Cannot read {name}: not an image, or a format this tool cannot read.") from None


def photo_input(elem_id: str) -> UploadedImage:
    # image_mode=None: the file reaches fmblur.image_io untouched (16-bit, CMYK, EXIF rotation included).
    return UploadedImage(
        type="filepath", image_mode=None, sources=["upload", "clipboard"], label="Photo", elem_id=elem_id
    )


def _without_server_path(error: Exception, path: str) -> str:
    """The error's message with the server-side temporary path reduced to the uploaded file's name."""
    return str(error).replace(str(path), Path(path).name)


def _load(path: str | None) -> np.ndarray:
    if not path:
        raise gr.Error("Upload an image first (or pick an example).")
    try:
        image, _ = read_image(path)
    except ImageReadError as error:
        raise gr.Error(f"Cannot read {_without_server_path(error, path)}") from None
    return image


def pipeline_options(
    detector: str,
    threshold: float | None,
    landmarks: str,
    mode: str,
    kernel: int,
    relative_kernel: bool,
    shape: str,
    mask_scale: float,
    people: str = EVERYONE,
    references: list | None = None,
) -> PipelineOptions:
    """The options record the controls describe (APP_SETTINGS names them; the handlers' API takes these names)."""
    config = ObfuscationConfig(
        mode=mode, kernel=None if relative_kernel else int(kernel), shape=shape, mask_scale=float(mask_scale)
    )
    photos = [item[0] if isinstance(item, (tuple, list)) else item for item in references or []]
    whom = {EVERYONE: "everyone", KEEP_REFERENCES: "keep", ONLY_REFERENCES: "only"}[people]
    return PipelineOptions.create(
        detector,
        detector_options={"threshold": threshold},
        landmarks=landmarks,
        obfuscation=config,
        whom=whom,
        references=tuple(photos) if whom != "everyone" else (),
    )


def _anonymizer(options: PipelineOptions) -> Anonymizer:
    """The pipeline of `options`; bad values and missing models become a message in the page."""
    try:
        try:
            anonymizer = build_anonymizer(options)
        except ValueError as error:
            raise ValueError(_without_server_paths(error, list(options.references))) from None
        anonymizer.detector.load()
    except (ValueError, DetectorUnavailable, RuntimeError) as error:
        raise gr.Error(str(error)) from None
    return anonymizer


def takes_pipeline_options(handler: Callable | None = None, *, settings: dict = APP_SETTINGS) -> Callable:
    """A handler written as `handler(source, options: PipelineOptions, *more)`, served to Gradio with the pipeline
    controls (named once, in APP_SETTINGS) as its parameters after `source`.

    Gradio names an endpoint's parameters after its function's signature, and gradio_client callers pass them by
    those names; so the served signature lists the controls, and the handler receives the options record built
    from them. Controls left out by an API caller take the values of `settings` (the video handler: the video
    default detector)."""
    if handler is None:
        return functools.partial(takes_pipeline_options, settings=settings)
    signature = inspect.signature(handler)
    source, _, *more = signature.parameters.values()
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    controls = [
        inspect.Parameter(name, kind, default=value, annotation=CONTROL_TYPES[name]) for name, value in settings.items()
    ]
    served = signature.replace(parameters=[source, *controls, *more])

    @functools.wraps(handler)
    def serve(*args, **kwargs):
        values = served.bind(*args, **kwargs)
        values.apply_defaults()
        arguments = dict(values.arguments)
        try:
            options = pipeline_options(**{name: arguments.pop(name) for name in settings})
        except ValueError as error:
            raise gr.Error(str(error)) from None
        return handler(arguments.pop(source.name), options, **arguments)

    serve.__signature__ = served  # type: ignore[attr-defined]
    return serve


def _without_server_paths(error: Exception, paths: list[str]) -> str:
    text = str(error)
    for path in paths:
        text = text.replace(str(path), Path(path).name)
    return text


def _timing_line(result: PipelineResult) -> str:
    t = result.timings_ms
    return (
        f"detect {t['detect']:.0f} ms · landmarks {t['landmarks']:.0f} ms · obfuscate {t['obfuscate']:.0f} ms · "
        f"total {t['total']:.0f} ms ({result.fps:.1f} FPS)\n\nRan on: {result.runtime['detector']}"
        f" (landmarks: {result.runtime['landmarks']})"
    )


@contextmanager
def request_folder() -> Iterator[Path]:
    """A private working folder for one request's results, deleted shortly after the request returns.

    Results are handed to Gradio as files, not arrays: Gradio writes arrays to a cache path named by their
    content, in place, so two users getting the same picture at once could read a half-rewritten file.
    Files are copied into its cache atomically, right after the handler returns.
    """
    folder = Path(tempfile.mkdtemp(prefix="fmblur-request-"))
    try:
        yield folder
    finally:
        remove = threading.Timer(RESULT_FOLDER_SECONDS, shutil.rmtree, args=(folder,), kwargs={"ignore_errors": True})
        remove.daemon = True
        remove.start()


def _png(image: np.ndarray, folder: Path, name: str) -> str:
    path = folder / f"{name}.png"
    write_image(image, path, "PNG")
    return str(path)


@takes_pipeline_options
def anonymize_image(path: str | None, options: PipelineOptions, privacy_meter: bool = True) -> tuple[str, str, str]:
    """(original with detections drawn, anonymised image, summary markdown with the privacy meter)."""
    image = _load(path)
    anonymizer = _anonymizer(dataclasses.replace(options, privacy_meter=bool(privacy_meter)))
    result = anonymizer(image)
    summary = f"**{len(result.faces)} face(s) hidden** with `{options.detector}` · {_timing_line(result)}"
    if anonymizer.selection is not None:
        summary += f"\n\n{len(result.kept)} face(s) left visible by the reference photos"
    if result.privacy is not None:
        summary += (
            f"\n\n**Privacy meter: {result.privacy.summary}** (dlib face embeddings; a face counts when its "
            "blurred version is still picked out as its original among hundreds of other people)"
        )
    with request_folder() as folder:
        return (
            _png(draw_faces(image, result.faces, kept=result.kept), folder, "detections"),
            _png(result.image, folder, "anonymized"),
            summary,
        )


@takes_pipeline_options(settings=VIDEO_SETTINGS)
def anonymize_video_file(
    path: str | None,
    options: PipelineOptions,
    tracking: bool = True,
    detect_every: int = 1,
    keyframe_every: int = VIDEO_KEYFRAME_EVERY,
    progress: gr.Progress = gr.Progress(),  # noqa: B008  (Gradio finds the progress bar by this default)
) -> tuple[str, str, str, list[tuple[str, str]]]:
    """(anonymised MP4, summary markdown, per-frame tracks CSV, review thumbnails with captions).
    `keyframe_every` k > 0 runs the key-frame detector (the default preset) on every k-th frame beside the chosen
    detector (tracking on)."""
    if not path:
        raise gr.Error("Upload a video first.")
    try:
        duration = video_duration(path)
    except VideoReadError as error:
        raise gr.Error(f"Cannot read {_without_server_path(error, path)}") from None
    if duration > MAX_VIDEO_SECONDS:
        raise gr.Error(
            f"This video is {duration:.0f} s long; the web app takes up to {MAX_VIDEO_SECONDS} s. "
            "Use `fmblur video` for longer footage."
        )
    anonymizer = _anonymizer(options)
    try:
        tracking_options = TrackingOptions(
            enabled=bool(tracking),
            detect_every=int(detect_every) if tracking else 1,
            keyframe_every=int(keyframe_every) if tracking else 0,
        )
    except ValueError as error:
        raise gr.Error(str(error)) from None
    stem = Path(path).stem

    def report_progress(done: int, total: int | None) -> None:
        progress((done, total) if total else done, desc="Anonymising", unit="frames")

    with request_folder() as folder:
        try:
            report = anonymize_video(
                path,
                folder / f"{stem}.mp4",
                anonymizer,
                tracking_options,
                tracks_file=folder / f"{stem}.tracks.csv",
                progress=report_progress,
            )
        except VideoReadError as error:
            raise gr.Error(f"Cannot read {_without_server_path(error, path)}") from None
        t = report.timings_ms
        summary = (
            f"**{report.frames} frames** ({report.duration_s:.1f} s at {report.input_fps:.1f} fps), "
            f"{report.faces_hidden} regions hidden, audio {report.audio} · "
            f"**{report.processing_fps:.1f} fps overall** · per frame: detect {t['detect']:.0f} ms, "
            f"obfuscate {t['obfuscate']:.0f} ms, encode {t['encode']:.0f} ms"
        )
        if "key frames" in t:
            summary += (
                f", {tracking_options.keyframe_detector} key frames {t['key frames']:.0f} ms (averaged over all frames)"
            )
        if anonymizer.selection is not None:
            summary += f"\n\n{len(report.kept_tracks)} track(s) left visible by the reference photos"
        if report.review:
            summary += (
                f"\n\n**{len(report.review)} region(s) to review**: covered by tracking alone (weak evidence, "
                "held, interpolated or carried back), shown below"
            )
        review = [
            (_png(image, folder, f"review_{i}"), caption)
            for i, (image, caption) in enumerate(review_thumbnails(report.output, report.review))
        ]
        return str(report.output), summary, str(report.tracks_file), review


COMPARE_DEFAULT = ["fast", "retinaface", "centerface"]


def compare_detectors(
    path: str | None,
    detectors: list[str],
    progress: gr.Progress = gr.Progress(),  # noqa: B008  (Gradio finds the progress bar by this default)
) -> Iterator[tuple[list[tuple[str, str]], str, pd.DataFrame, pd.DataFrame]]:
    """Each chosen detector's boxes and anonymised result on the same photo, streamed as each one finishes:
    (gallery of panels with captions, table markdown, FPS per detector, faces per detector: two charts, since
    bars of two measures on one axis would stack). On a shipped example the annotated faces are drawn too: found
    ones thin, missed ones thick."""
    image = _load(path)
    if not detectors:
        raise gr.Error("Pick at least one detector to compare.")
    unknown = [name for name in detectors if name not in available_detector_names()]
    if unknown:
        raise gr.Error(f"Not available here: {', '.join(unknown)}")
    truth = ground_truth_for(path)
    header = "| detector | faces | annotated faces found | detect ms | FPS |\n|---|---|---|---|---|"
    panels, rows, speeds, counts = [], [], [], []
    with request_folder() as folder:
        for index, panel in enumerate(compare(image, detectors, truth)):
            progress((index + 1, len(detectors)), desc=f"{panel.detector} done", unit="detectors")
            found = f"{panel.found} of {panel.annotated}" if panel.annotated is not None else "(no annotations)"
            caption = f"{panel.detector}: {panel.faces} faces, {panel.detect_ms:.0f} ms"
            panels.append((_png(panel.detections, folder, f"{index}_detections"), f"{caption} (boxes)"))
            panels.append((_png(panel.anonymized, folder, f"{index}_anonymized"), f"{caption} (anonymised)"))
            rows.append(f"| {panel.detector} | {panel.faces} | {found} | {panel.detect_ms:.0f} | {panel.fps:.1f} |")
            speeds.append({"detector": panel.detector, "FPS": round(panel.fps, 2)})
            counts.append({"detector": panel.detector, "faces": panel.faces})
            yield list(panels), "\n".join([header, *rows]), pd.DataFrame(speeds), pd.DataFrame(counts)


def model_card_text(detector: str) -> str:
    """A detector's card: what it is, where its weights come from, their licence, and its measured table."""
    cls = detector_class(detector)
    lines = [
        f"### {detector}",
        (cls.__doc__ or "").strip(),
        f"**Weights**: {cls.source}",
        f"**Licence**: {cls.licence}",
    ]
    if cls.training_command():
        lines.append(f"**Trained with**: `{cls.training_command()}` (model card: `weights/README.md`)")
    table = measured_table(detector)
    lines.append(table or "_Not measured by `fmblur eval` yet._")
    return "\n\n".join(lines)


def training_plot(detector: str) -> gr.LinePlot:
    """The Models tab's training-curve plot for `detector` (built in place, or returned as the update on a
    switch): its shipped weights' per-epoch history, or an empty plot whose title says none was kept."""
    rows, source = training_curves(detector)
    if rows:
        value, title = pd.DataFrame(rows), f"Training curves of {detector} ({source})"
    else:
        value = pd.DataFrame(columns=["epoch", "measure", "value"])
        title = f"{detector}: no training history published (pretrained, or trained before histories were kept)"
    return gr.LinePlot(value, x="epoch", y="value", color="measure", title=title, elem_id="training-curves")


@functools.cache
def _live_anonymizer() -> Anonymizer:
    return build_anonymizer(PipelineOptions.create("fast"))


def anonymize_live(frame: np.ndarray | None) -> tuple[np.ndarray | None, str]:
    """One webcam frame anonymised with the fast preset, and the rate it ran at."""
    if frame is None:
        return None, ""
    result = _live_anonymizer()(frame)
    return result.image, f"{len(result.faces)} face(s) hidden · {result.fps:.1f} FPS (this frame's pipeline)"


def default_threshold(detector: str) -> float:
    return detector_class(detector).default_threshold


def _detector_choices() -> list[tuple[str, str]]:
    """(label, name): presets first, then the single detectors whose weights are here; each detector
    `fmblur eval` measured on face-mask val carries its AP@.5 from the committed report in the label."""
    names = available_detector_names()
    presets = [name for name in PRESETS if name in names]
    ordered = presets + [name for name in names if name not in presets]
    labels = menu_labels()
    return [(labels.get(name, name), name) for name in ordered]


def _device_text() -> str:
    """The header's device line: the process's choice (FMBLUR_DEVICE, default auto) and what it resolved to."""
    resolved = resolved_device()
    gpu = f" ({torch.cuda.get_device_name(0)})" if resolved == "cuda" else ""
    providers = ", ".join(onnx_providers())
    return f"**{resolved.upper()}**{gpu} (device {selected_device()}; onnxruntime providers: {providers})"


def _untrained_variants_note() -> str:
    """The project's detectors without weights yet: listed (not selectable) with the command that trains them."""
    missing = [name for name in detector_names() if name not in available_detector_names()]
    if not missing:
        return ""
    rows = [f"~~{name}~~ not trained yet: `{detector_class(name).training_command()}`" for name in missing]
    return "Unavailable: " + " · ".join(rows)


def _detector_controls(label: str, value: str) -> tuple[gr.Dropdown, gr.Slider]:
    dropdown = gr.Dropdown(_detector_choices(), value=value, label=label)
    measured = {name: text for name, text in detector_summaries().items() if name in PRESETS}
    if measured:
        gr.Markdown(" · ".join(f"**{name}**: {text}" for name, text in measured.items()))
    note = _untrained_variants_note()
    if note:
        gr.Markdown(note)
    slider = gr.Slider(0.05, 0.99, value=default_threshold(value), step=0.01, label="Score threshold")
    # Each detector's scores live on its own scale: reset the threshold to its default on a switch.
    dropdown.change(default_threshold, dropdown, slider, api_visibility="private")
    return dropdown, slider


def _pipeline_controls(start: dict = APP_SETTINGS) -> list[gr.components.Component]:
    """Detector, threshold, landmark source and obfuscation settings, in the handlers' argument order."""
    detector, threshold = _detector_controls("Detector", start["detector"])
    landmarks = gr.Dropdown(landmark_source_names(), value=start["landmarks"], label="Landmarks")
    mode = gr.Radio(list(MODES), value=start["mode"], label="Mode")
    relative_kernel = gr.Checkbox(value=start["relative_kernel"], label="Kernel relative to face size")
    kernel = gr.Slider(*KERNEL_RANGE, value=start["kernel"], step=2, label="Fixed Gaussian kernel")
    shape = gr.Radio(list(SHAPES), value=start["shape"], label="Shape")
    mask_scale = gr.Slider(1.0, 2.0, value=start["mask_scale"], step=0.05, label="Mask scale")
    with gr.Accordion("Whom to hide", open=False):
        people = gr.Radio([EVERYONE, KEEP_REFERENCES, ONLY_REFERENCES], value=start["people"], label="Hide")
        references = gr.Gallery(
            label="Reference photos (the largest face of each)",
            type="filepath",
            interactive=True,
            file_types=["image"],
            columns=4,
            height=160,
        )
    return [detector, threshold, landmarks, mode, kernel, relative_kernel, shape, mask_scale, people, references]


def build_app() -> gr.Blocks:
    with gr.Blocks(title="fmblur: face anonymiser for masked faces", delete_cache=CACHE_CLEANUP) as app:
        gr.Markdown(
            "# fmblur\nHide every face (masked or not) in a photo or a video. Runs on this server's "
            f"{_device_text()}; nothing is uploaded anywhere else.\n\n{LIMITS_TEXT}"
        )
        with gr.Tab("Anonymize"):
            with gr.Row():
                with gr.Column(scale=1):
                    source = photo_input("photo-input")
                    controls = _pipeline_controls()
                    privacy_meter = gr.Checkbox(value=True, label="Privacy meter (can a hidden face be recognised?)")
                    run = gr.Button("Anonymize", variant="primary")
                with gr.Column(scale=2):
                    with gr.Row():
                        detections = gr.Image(label="Detections", format="png", interactive=False)
                        anonymized = gr.Image(
                            label="Anonymized", format="png", interactive=False, elem_id="anonymized-output"
                        )
                    summary = gr.Markdown()
            if EXAMPLES:
                gr.Examples(EXAMPLES, inputs=source)
            run.click(
                anonymize_image,
                [source, *controls, privacy_meter],
                [detections, anonymized, summary],
                api_name="anonymize",
            )
        with gr.Tab("Video"):
            with gr.Row():
                with gr.Column(scale=1):
                    video_source = gr.Video(label="Video", sources=["upload"], elem_id="video-input")
                    video_controls = _pipeline_controls(VIDEO_SETTINGS)
                    tracking = gr.Checkbox(value=True, label="Track faces across frames (hold, look-back)")
                    detect_every = gr.Slider(1, 10, value=1, step=1, label="Detect every k-th frame")
                    keyframe_every = gr.Slider(
                        0,
                        30,
                        value=VIDEO_KEYFRAME_EVERY,
                        step=1,
                        label=f"Key frame every k-th frame: {TrackingOptions().keyframe_detector} there too (0 = off)",
                        info="Finds faces the chosen detector misses (dark, small) and hands them to the tracker",
                    )
                    run_video = gr.Button("Anonymize video", variant="primary")
                with gr.Column(scale=2):
                    video_result = gr.Video(label="Anonymized", interactive=False, height=480, elem_id="video-output")
                    video_summary = gr.Markdown()
                    tracks = gr.File(label="Per-frame regions (CSV)", interactive=False)
                    review = gr.Gallery(label="To review: regions covered by tracking alone", columns=4, height=200)
            run_video.click(
                anonymize_video_file,
                [video_source, *video_controls, tracking, detect_every, keyframe_every],
                [video_result, video_summary, tracks, review],
                api_name="anonymize_video",
            )
        with gr.Tab("Compare"):
            with gr.Row():
                with gr.Column(scale=1):
                    compare_source = photo_input("compare-input")
                    chosen = gr.CheckboxGroup(
                        _detector_choices(), value=COMPARE_DEFAULT, label="Detectors (each at its default threshold)"
                    )
                    compare_button = gr.Button("Compare", variant="primary")
                    gr.Markdown(
                        "On an example photo its annotated faces are drawn too: **thin** outline = found by that "
                        "detector, **thick red** = missed."
                    )
                with gr.Column(scale=2):
                    compare_panels = gr.Gallery(label="Each detector: boxes, then anonymised", columns=2, height=520)
                    compare_table = gr.Markdown()
                    with gr.Row():
                        speed_chart = gr.BarPlot(
                            x="detector",
                            y="FPS",
                            title="FPS (detection)",
                            y_lim=[0, None],
                            x_label_angle=-30,
                            height=260,
                        )
                        faces_chart = gr.BarPlot(
                            x="detector", y="faces", title="Faces found", y_lim=[0, None], x_label_angle=-30, height=260
                        )
            if EXAMPLES:
                gr.Examples(EXAMPLES, inputs=compare_source)
            compare_button.click(
                compare_detectors,
                [compare_source, chosen],
                [compare_panels, compare_table, speed_chart, faces_chart],
                api_name="compare",
            )
        with gr.Tab("Models"):
            gr.Markdown(
                "What each detector is and what was measured of it: `fmblur eval` on the validation splits "
                "(never trained or tuned on), read from `docs/results/eval/` with the date and commit of the run."
            )
            model = gr.Dropdown(_detector_choices(), value=APP_SETTINGS["detector"], label="Detector")
            model_card = gr.Markdown(model_card_text(APP_SETTINGS["detector"]), elem_id="model-card")
            model.change(model_card_text, model, model_card, api_name="model_card")
            history = training_plot(APP_SETTINGS["detector"])
            model.change(training_plot, model, history, api_visibility="private")
            for split, label in SPLIT_NAMES.items():
                curves = pd.DataFrame(pr_curves(split))
                if not curves.empty:
                    gr.LinePlot(curves, x="recall", y="precision", color="detector", title=f"Precision-recall, {label}")
            sweep, measured = privacy_sweep()
            if sweep:
                gr.LinePlot(
                    pd.DataFrame(sweep),
                    x="kernel",
                    y="value",
                    color="measure",
                    title=f"Privacy vs utility by blur kernel ({measured})",
                    elem_id="privacy-sweep",
                )
            else:
                gr.Markdown("_No privacy sweep measured yet: `fmblur eval privacy`._")
        with gr.Tab("Live"):
            gr.Markdown(
                "Your camera, anonymised frame by frame with the `fast` preset, in this page only. "
                "**No camera?** Where the browser has none, or you deny access, the camera box below stays "
                "empty and nothing is sent.",
                elem_id="live-message",
            )
            with gr.Row():
                camera = gr.Image(sources=["webcam"], streaming=True, label="Camera", elem_id="live-camera")
                live_view = gr.Image(label="Anonymised", interactive=False)
            live_fps = gr.Markdown()
            camera.stream(anonymize_live, camera, [live_view, live_fps], stream_every=0.1, api_name="live")
    app.queue(default_concurrency_limit=CONCURRENCY_LIMIT)
    return app


if __name__ == "__main__":
    # FMBLUR_DEVICE=cuda on a GPU Space (an error at start where there is none), cpu to keep the GPU free.
    select_device(os.environ.get("FMBLUR_DEVICE", "auto"))
    build_app().launch(
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", 7860)),
        max_file_size=f"{MAX_UPLOAD_MB}mb",
        show_error=True,
    )
