"""--device: auto / cpu / cuda, what each result says ran, and one clear error where CUDA is missing."""

from __future__ import annotations

import json
import subprocess
import sys

import onnxruntime
import pytest
import torch

from fmblur import device
from fmblur.detectors import create_detector
from fmblur.pipeline import Anonymizer
from tests.conftest import REPO

NO_GPU = not torch.cuda.is_available()


@pytest.fixture(autouse=True)
def restore_device():
    yield
    device.select_device("auto")


def test_cpu_keeps_every_model_on_the_cpu_and_says_so(example):
    device.select_device("cpu")
    assert device.onnx_providers() == ("CPUExecutionProvider",)
    result = Anonymizer("recall-first", landmarks="resnet18")(example.image)
    assert len(result.faces) >= len(example.boxes)
    runtime = result.to_json()["runtime"]
    assert runtime["device"] == "cpu"
    assert (
        runtime["detector"].count("onnxruntime CPUExecutionProvider") == 2 and "mtcnn: torch cpu" in runtime["detector"]
    )
    assert runtime["landmarks"] == "torch cpu"


def test_auto_asks_onnxruntime_for_cuda_first_only_where_it_has_it(monkeypatch):
    monkeypatch.setattr(
        onnxruntime, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    device.select_device("auto")
    assert device.onnx_providers() == ("CUDAExecutionProvider", "CPUExecutionProvider")
    device.select_device("cpu")
    assert device.onnx_providers() == ("CPUExecutionProvider",)
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    device.select_device("auto")
    assert device.onnx_providers() == ("CPUExecutionProvider",)


def test_a_detector_reports_the_provider_that_ran_it(example):
    detector = create_detector("retinaface")
    assert detector.runtime() == "not loaded"
    detector.detect(example.image)
    expected = "CUDAExecutionProvider" if "CUDAExecutionProvider" in onnxruntime.get_available_providers() else "CPU"
    assert expected in detector.runtime()


@pytest.mark.skipif(not NO_GPU, reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_one_error_line_and_exit_2(example, tmp_path):
    with pytest.raises(device.DeviceUnavailable, match="no CUDA GPU"):
        device.select_device("cuda")
    assert device.selected_device() == "auto"  # a refused choice changes nothing
    out = tmp_path / "out"
    command = [sys.executable, "-m", "fmblur", "image", str(example.path), "-o", str(out), "--device", "cuda"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "fmblur: error: --device cuda: PyTorch sees no CUDA GPU here (use --device cpu or auto)"
    ]
    assert not out.exists()


def test_the_json_of_a_cli_run_names_the_device(example, tmp_path):
    from fmblur.cli import main

    assert main(["image", str(example.path), "-o", str(tmp_path), "--json", "--device", "cpu", "-q"]) == 0
    record = json.loads((tmp_path / f"{example.path.stem}.json").read_text())
    assert record["runtime"]["device"] == "cpu" and "CPUExecutionProvider" in record["runtime"]["detector"]
    assert len(record["faces"]) >= len(example.boxes)
