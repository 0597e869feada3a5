"""Leak benchmark: moving-camera clips with a known box for every face in every frame.

    python -m fmblur.bench video --leaks [--presets default fast "fast --keyframe-every 10"] [--seconds 8] [--clips 3]

Clips are built from annotated training photos (WIDER FACE subset training part, face-mask 0..239): a virtual
camera pans across the photo, zooms in slowly and shakes a little, rendered at 1280x720 (the last clip at
1920x1080) and 25 fps, with a tone as audio track; each face's annotated box follows the camera. fmblur (its
defaults and each preset, `fmblur video` as a user runs it) and deface (its command, threshold 0.2) anonymise
each clip, and per clip the table gives:
- leaked frames: frames where some known face of at least 24 px keeps SSIM >= 0.6 in its box (still visible);
- of which a face untouched: leaked frames where such a face keeps SSIM >= 0.9 (never obfuscated: a miss);
- leaked at face scale: the same count with SSIM taken on each box shrunk to 32 px on its shorter side (never
  enlarged): a face enlarged from a small photo is soft at pixel scale, so SSIM's 7x7 windows rate it and its
  blur alike even when no feature survives; at face scale its features are what the windows compare;
- faces hidden: the share of (face, frame) pairs of at least 24 px with SSIM below 0.6;
- fps: frames / wall time of the whole command (start-up included), on this machine, in the same run;
- false-positive area: the mean share of each frame changed where no known face is (boxes grown by 30 %;
  8x8 block means moved by more than 12 grey levels, so re-encoding alone does not count).
Results go to stdout and, with --write, to docs/results/video-leaks.md with date, machine and commit.
"""

from __future__ import annotations

import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np

from fmblur.bench.processes import REPO, timed_process
from fmblur.datasets import AnnotatedImage, load_split
from fmblur.image_io import read_image

FPS = 25
MIN_FACE = 24  # px in the clip: smaller faces are not counted as leaks (nor as hidden)
SSIM_VISIBLE = 0.6  # a face box this similar to the input is still visible
# A face box this similar was not obfuscated at all (a detector miss), not merely blurred too little: SSIM of a
# soft face (an enlarged small photo) and its blur stays near 0.6 even for a perfect box, because SSIM rates
# flat 7x7 windows as similar; this column tells the two causes of a leak apart.
SSIM_UNTOUCHED = 0.9
FACE_SCALE = 32  # px: the shorter side a face box is shrunk to for the face-scale SSIM
CHANGED = 12  # grey levels: an 8x8 block whose mean moved more than this was obfuscated (not just re-encoded)
BLOCK = 8
FACE_MARGIN = 0.3  # known boxes grown by this share before counting changed pixels as false positives


@dataclass
class LeakClip:
    path: Path
    boxes: list[np.ndarray]  # per frame, (N, 4) known face boxes in the clip's pixels
    size: tuple[int, int]  # width, height
    source: str


def pick_photos(count: int) -> list[AnnotatedImage]:
    """Training photos with the most faces of at least 16 px (crowds pan well), WIDER and face-mask alternating."""

    def rank(records: list[AnnotatedImage]) -> list[AnnotatedImage]:
        def usable(record: AnnotatedImage) -> int:
            sides = np.minimum(record.boxes[:, 2] - record.boxes[:, 0], record.boxes[:, 3] - record.boxes[:, 1])
            return int((sides >= 16).sum())

        return sorted(records, key=lambda r: (-usable(r), str(r.path)))

    wider, fmd = rank(load_split("wider-train")), rank(load_split("fmd-train"))
    chosen = []
    for index in range(count):
        pool = wider if index % 2 == 0 else fmd
        chosen.append(pool[index // 2])
    return chosen


def camera(frames: int, photo: tuple[int, int], aspect: float, rng: np.random.Generator) -> list[np.ndarray]:
    """Per frame the viewport (x, y, width, height) in photo pixels: a pan left to right, a slow zoom in from the
    widest view to 75 % of it, and a small shake."""
    width, height = photo
    widest_w = min(width, height * aspect)
    views = []
    for index in range(frames):
        progress = index / max(1, frames - 1)
        view_w = widest_w * (1.0 - 0.25 * progress)
        view_h = view_w / aspect
        shake = rng.normal(0, 0.004 * view_w, 2)
        x = (width - view_w) * progress + shake[0]
        y = (height - view_h) / 2 + shake[1]
        x = float(np.clip(x, 0, width - view_w))
        y = float(np.clip(y, 0, height - view_h))
        views.append(np.array([x, y, view_w, view_h]))
    return views


def _write_tone(container: av.container.OutputContainer, seconds: float):
    stream = container.add_stream("aac", rate=48000)
    stream.layout = "mono"
    samples = np.sin(2 * np.pi * 440 * np.arange(int(seconds * 48000)) / 48000).astype(np.float32) * 0.1
    packets = []
    for start in range(0, len(samples), 1024):
        frame = av.AudioFrame.from_ndarray(samples[None, start : start + 1024], format="fltp", layout="mono")
        frame.sample_rate = 48000
        frame.pts = start
        packets.extend(stream.encode(frame))
    return stream, packets


def build_clip(record: AnnotatedImage, target: Path, size: tuple[int, int], seconds: float, seed: int) -> LeakClip:
    """Render one moving-camera clip (H.264 MP4 with audio) and the known face boxes of every frame."""
    photo, _ = read_image(record.path)
    out_w, out_h = size
    frames = int(seconds * FPS)
    views = camera(frames, (photo.shape[1], photo.shape[0]), out_w / out_h, np.random.default_rng(seed))
    valid = ~record.ignore if len(record.ignore) == len(record.boxes) else np.ones(len(record.boxes), bool)
    known = record.boxes[valid].astype(np.float64)
    boxes = []
    with av.open(str(target), "w", format="mp4") as container:
        video = container.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = out_w, out_h, "yuv420p"
        video.options = {"crf": "18", "preset": "veryfast"}
        audio, audio_packets = _write_tone(container, seconds)
        for index, (x, y, view_w, _) in enumerate(views):
            scale = out_w / view_w
            matrix = np.array([[scale, 0, -x * scale], [0, scale, -y * scale]])
            image = cv2.warpAffine(photo, matrix, (out_w, out_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
            moved = (known - [x, y, x, y]) * scale
            clipped = moved.copy()
            clipped[:, [0, 2]] = clipped[:, [0, 2]].clip(0, out_w)
            clipped[:, [1, 3]] = clipped[:, [1, 3]].clip(0, out_h)
            area = (moved[:, 2] - moved[:, 0]) * (moved[:, 3] - moved[:, 1])
            inside = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
            boxes.append(clipped[inside >= 0.6 * np.maximum(area, 1e-6)])
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            frame.pts = index
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        for packet in [*audio_packets, *audio.encode()]:
            container.mux(packet)
    return LeakClip(target, boxes, size, record.path.name)


def _grey_frames(path: Path):
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            yield frame.to_ndarray(format="gray")


def at_face_scale(box: np.ndarray) -> np.ndarray:
    """A face box shrunk (area-averaged) so its shorter side is FACE_SCALE pixels; smaller boxes as they are."""
    shrink = FACE_SCALE / min(box.shape[:2])
    if shrink >= 1.0:
        return box
    size = (max(7, round(box.shape[1] * shrink)), max(7, round(box.shape[0] * shrink)))
    return cv2.resize(box, size, interpolation=cv2.INTER_AREA)


def measure(clip: LeakClip, output: Path) -> dict[str, float]:
    """Leaked frames (at pixel and at face scale), share of faces hidden, and false-positive area of one
    anonymised clip."""
    from skimage.metrics import structural_similarity

    leaked_frames = missed_frames = face_scale_frames = faces = hidden = 0
    false_area = []
    out_w, out_h = clip.size
    for index, (before, after) in enumerate(zip(_grey_frames(clip.path), _grey_frames(output), strict=False)):
        after = after[:out_h, :out_w]
        known = clip.boxes[index]
        leaked = missed = face_scale_leak = False
        outside = np.ones(before.shape, bool)
        for x1, y1, x2, y2 in known:
            grow_x, grow_y = FACE_MARGIN * (x2 - x1), FACE_MARGIN * (y2 - y1)
            rows = slice(max(0, int(y1 - grow_y)), int(np.ceil(y2 + grow_y)))
            outside[rows, max(0, int(x1 - grow_x)) : int(np.ceil(x2 + grow_x))] = False
            if min(x2 - x1, y2 - y1) < MIN_FACE:
                continue
            top, left, bottom, right = int(y1), int(x1), int(np.ceil(y2)), int(np.ceil(x2))
            original, result = before[top:bottom, left:right], after[top:bottom, left:right]
            similarity = structural_similarity(original, result)
            face_scale_leak |= structural_similarity(at_face_scale(original), at_face_scale(result)) >= SSIM_VISIBLE
            faces += 1
            if similarity >= SSIM_VISIBLE:
                leaked = True
                missed |= similarity >= SSIM_UNTOUCHED
            else:
                hidden += 1
        leaked_frames += int(leaked)
        missed_frames += int(missed)
        face_scale_frames += int(face_scale_leak)
        # Block means: re-encoding moves single pixels by more than CHANGED, obfuscation moves whole blocks.
        blocks = (before.shape[1] // BLOCK, before.shape[0] // BLOCK)
        mean_before, mean_after = (
            cv2.resize(g, blocks, interpolation=cv2.INTER_AREA).astype(np.int16) for g in (before, after)
        )
        changed = np.abs(mean_before - mean_after) > CHANGED
        outside_blocks = cv2.resize(outside.astype(np.uint8), blocks, interpolation=cv2.INTER_AREA) > 0.5
        false_area.append(float((changed & outside_blocks).mean()))
    return {
        "leaked_frames": leaked_frames,
        "missed_frames": missed_frames,
        "face_scale_frames": face_scale_frames,
        "faces_hidden": hidden / faces if faces else float("nan"),
        "false_positive_area": float(np.mean(false_area)) if false_area else float("nan"),
    }


def leak_table(presets: list[str], seconds: float, clip_count: int, work: Path) -> str:
    lines = [
        "| clip | frames | runner | leaked frames | of which a face untouched | leaked at face scale | faces hidden "
        "| fps | false-positive area |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for index, record in enumerate(pick_photos(clip_count)):
        size = (1920, 1080) if index == clip_count - 1 else (1280, 720)
        clip = build_clip(record, work / f"clip{index}_{size[1]}p.mp4", size, seconds, seed=index)
        frames = len(clip.boxes)
        # fmblur as a user runs it: the default tracking options; `-q` only hides the progress bar.
        fmblur_video = [sys.executable, "-m", "fmblur", "video", str(clip.path), "-q", "--overwrite"]
        runners = []
        for run_number, run in enumerate(presets):
            # "fast --keyframe-every 10": a preset, then any `fmblur video` options of this run;
            # "default": `fmblur video` with no detector option, the settings a user gets.
            preset, *options = shlex.split(run)
            folder = work / f"run{run_number}_{preset}"
            detector = [] if preset == "default" else ["--detector", preset]
            command = [*fmblur_video, "-o", str(folder), *detector, *options]
            runners.append((f"fmblur {run}", command, folder / clip.path.name))
        if shutil.which("deface"):
            deface_out = work / f"deface_{clip.path.name}"
            runners.append(
                ("deface (CenterFace, t=0.2)", ["deface", str(clip.path), "-o", str(deface_out)], deface_out)
            )
        for label, command, output in runners:
            seconds_taken, _, code = timed_process(command)
            if code != 0:
                lines.append(f"| {clip.path.name} ({clip.source}) | {frames} | {label} | failed | | | | | |")
                continue
            result = measure(clip, output)
            lines.append(
                f"| {clip.path.name} ({clip.source}) | {frames} | {label} | {result['leaked_frames']} "
                f"| {result['missed_frames']} | {result['face_scale_frames']} | {result['faces_hidden']:.3f} "
                f"| {frames / seconds_taken:.2f} "
                f"| {result['false_positive_area']:.4f} |"
            )
            print(lines[-1], file=sys.stderr, flush=True)
    return "\n".join(lines)


def write_results(table: str, command: str, measured: dict[str, str]) -> Path:
    """docs/results/video-leaks.md; `measured`: the provenance taken when the runs started."""
    from fmblur.provenance import provenance_line

    target = REPO / "docs" / "results" / "video-leaks.md"
    target.write_text(
        f"# Video leak benchmark\n\n`{command}`; {provenance_line(measured)}.\n\n"
        f"{__doc__.split(chr(10) + chr(10), 1)[1].strip()}\n\n{table}\n"
    )
    return target
