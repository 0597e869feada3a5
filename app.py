"""fmblur web app (Gradio Blocks): anonymise a photo, or compare two detectors on it.

Run `python app.py` and open http://127.0.0.1:7860. It runs on the CPU (CUDA when present) with the
detectors whose weights ship in pip packages: nothing is downloaded.
"""

from __future__ import annotations

import os
from pathlib import Path

# Offline by design: no usage analytics calls home (set before gradio is imported).
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
import numpy as np

from fmblur.detectors import DetectorUnavailable, detector_class, detector_names
from fmblur.draw import draw_faces
from fmblur.image_io import ImageReadError, read_image
from fmblur.landmarks import landmark_source_names
from fmblur.obfuscate import KERNEL_RANGE, MODES, SHAPES, ObfuscationConfig
from fmblur.pipeline import DEFAULT_DETECTOR, DEFAULT_LANDMARKS, Anonymizer, PipelineResult

EXAMPLES_DIR = Path(__file__).parent / "examples"
EXAMPLES = sorted(str(p) for p in EXAMPLES_DIR.glob("*.jpg"))
# Uploads above this are refused by the server before any work is done.
MAX_UPLOAD = "50mb"
# CPU work is queued: at most this many requests run at once, the rest wait their turn.
CONCURRENCY_LIMIT = 2


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


def photo_input() -> UploadedImage:
    # image_mode=None: the file reaches fmblur.image_io untouched (16-bit, CMYK, EXIF rotation included).
    return UploadedImage(type="filepath", image_mode=None, sources=["upload", "clipboard"], label="Photo")


def _load(path: str | None) -> np.ndarray:
    if not path:
        raise gr.Error("Upload an image first (or pick an example).")
    try:
        image, _ = read_image(path)
    except ImageReadError as error:
        # The message starts with the server-side temporary path; show the user only the file name.
        raise gr.Error(f"Cannot read {str(error).replace(str(path), Path(path).name)}") from None
    return image


def _run(
    image: np.ndarray, detector: str, threshold: float, landmarks: str, config: ObfuscationConfig
) -> PipelineResult:
    try:
        return Anonymizer(detector, landmarks, config, threshold=threshold)(image)
    except DetectorUnavailable as error:
        raise gr.Error(str(error)) from None


def _timing_line(result: PipelineResult) -> str:
    t = result.timings_ms
    return (
        f"detect {t['detect']:.0f} ms · landmarks {t['landmarks']:.0f} ms · obfuscate {t['obfuscate']:.0f} ms · "
        f"total {t['total']:.0f} ms ({result.fps:.1f} FPS)"
    )


def anonymize_image(
    path: str | None,
    detector: str,
    threshold: float,
    landmarks: str,
    mode: str,
    kernel: int,
    relative_kernel: bool,
    shape: str,
    mask_scale: float,
) -> tuple[np.ndarray, np.ndarray, str]:
    """(original with detections drawn, anonymised image, summary markdown)."""
    image = _load(path)
    try:
        config = ObfuscationConfig(
            mode=mode, kernel=None if relative_kernel else int(kernel), shape=shape, mask_scale=float(mask_scale)
        )
    except ValueError as error:
        raise gr.Error(str(error)) from None
    result = _run(image, detector, threshold, landmarks, config)
    summary = f"**{len(result.faces)} face(s) hidden** with `{detector}` · {_timing_line(result)}"
    return draw_faces(image, result.faces), result.image, summary


def compare_detectors(
    path: str | None, detector_a: str, threshold_a: float, detector_b: str, threshold_b: float
) -> tuple[np.ndarray, np.ndarray, str]:
    """Both detectors' faces drawn on the same image, with a timing table."""
    image = _load(path)
    rows = ["| detector | faces | detect ms | FPS |", "|---|---|---|---|"]
    drawn = []
    for detector, threshold in ((detector_a, threshold_a), (detector_b, threshold_b)):
        result = _run(image, detector, threshold, DEFAULT_LANDMARKS, ObfuscationConfig())
        drawn.append(draw_faces(image, result.faces))
        detect_ms = result.timings_ms["detect"]
        rows.append(f"| {detector} | {len(result.faces)} | {detect_ms:.0f} | {1000 / max(detect_ms, 1e-3):.1f} |")
    return drawn[0], drawn[1], "\n".join(rows)


def default_threshold(detector: str) -> float:
    return detector_class(detector).default_threshold


def _detector_controls(label: str, value: str) -> tuple[gr.Dropdown, gr.Slider]:
    dropdown = gr.Dropdown(detector_names(), value=value, label=label)
    slider = gr.Slider(0.05, 0.99, value=default_threshold(value), step=0.01, label="Score threshold")
    # Each detector's scores live on its own scale: reset the threshold to its default on a switch.
    dropdown.change(default_threshold, dropdown, slider, api_visibility="private")
    return dropdown, slider


def build_app() -> gr.Blocks:
    with gr.Blocks(title="fmblur: face anonymiser for masked faces") as app:
        gr.Markdown(
            "# fmblur\nHide every face (masked or not) in a photo. Runs on this server's "
            "CPU/GPU; nothing is uploaded anywhere else."
        )
        with gr.Tab("Anonymize"):
            with gr.Row():
                with gr.Column(scale=1):
                    source = photo_input()
                    detector, threshold = _detector_controls("Detector", DEFAULT_DETECTOR)
                    landmarks = gr.Dropdown(landmark_source_names(), value=DEFAULT_LANDMARKS, label="Landmarks")
                    mode = gr.Radio(list(MODES), value="gaussian", label="Mode")
                    relative_kernel = gr.Checkbox(value=True, label="Kernel relative to face size")
                    kernel = gr.Slider(*KERNEL_RANGE, value=45, step=2, label="Fixed Gaussian kernel")
                    shape = gr.Radio(list(SHAPES), value="ellipse", label="Shape")
                    mask_scale = gr.Slider(1.0, 2.0, value=1.3, step=0.05, label="Mask scale")
                    run = gr.Button("Anonymize", variant="primary")
                with gr.Column(scale=2):
                    with gr.Row():
                        detections = gr.Image(label="Detections", format="png", interactive=False)
                        anonymized = gr.Image(label="Anonymized", format="png", interactive=False)
                    summary = gr.Markdown()
            if EXAMPLES:
                gr.Examples(EXAMPLES, inputs=source)
            run.click(
                anonymize_image,
                [source, detector, threshold, landmarks, mode, kernel, relative_kernel, shape, mask_scale],
                [detections, anonymized, summary],
                api_name="anonymize",
            )
        with gr.Tab("Compare"):
            with gr.Row():
                with gr.Column(scale=1):
                    compare_source = photo_input()
                    detector_a, threshold_a = _detector_controls("Detector A", "retinaface")
                    detector_b, threshold_b = _detector_controls("Detector B", "centerface")
                    compare = gr.Button("Compare", variant="primary")
                with gr.Column(scale=2):
                    with gr.Row():
                        view_a = gr.Image(label="Detector A", format="png", interactive=False)
                        view_b = gr.Image(label="Detector B", format="png", interactive=False)
                    table = gr.Markdown()
            if EXAMPLES:
                gr.Examples(EXAMPLES, inputs=compare_source)
            compare.click(
                compare_detectors,
                [compare_source, detector_a, threshold_a, detector_b, threshold_b],
                [view_a, view_b, table],
                api_name="compare",
            )
    app.queue(default_concurrency_limit=CONCURRENCY_LIMIT)
    return app


if __name__ == "__main__":
    build_app().launch(
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", 7860)),
        max_file_size=MAX_UPLOAD,
        show_error=True,
    )
