"""Shared fixtures: the CC0 example photos in examples/ with their Pascal VOC face boxes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from fmblur.bench.load import APP_SETTINGS
from fmblur.datasets import read_voc
from fmblur.image_io import read_image

REPO = Path(__file__).resolve().parents[1]
# What the app tests change from the app's starting settings, by name (fmblur.bench.load.APP_SETTINGS;
# the tests' recall bars suit RetinaFace).
IMAGE_SETTINGS = APP_SETTINGS
EXAMPLES_DIR = REPO / "examples"


@dataclass
class Example:
    path: Path
    image: np.ndarray
    boxes: np.ndarray  # ground-truth faces, (N, 4) x1 y1 x2 y2
    labels: list[str]


def load_examples() -> list[Example]:
    examples = []
    for xml in sorted(EXAMPLES_DIR.glob("*.xml")):
        annotation = read_voc(xml)
        image, _ = read_image(annotation.path)
        examples.append(Example(annotation.path, image, annotation.boxes, annotation.labels))
    return examples


@pytest.fixture(scope="session")
def examples() -> list[Example]:
    found = load_examples()
    assert len(found) >= 4, "examples/ must hold the CC0 photos with their annotations"
    return found


@pytest.fixture(scope="session")
def example(examples) -> Example:
    """One photo with masked and unmasked faces (maksssksksss5: 4 faces)."""
    return next(e for e in examples if e.path.stem == "maksssksksss5")


# The web app, served on localhost by the tests ---------------------------------------------------------------


@pytest.fixture(scope="session")
def server_tmp(tmp_path_factory):
    """The server's TMPDIR: its working folders and Gradio's cache live here, where the tests can look."""
    return tmp_path_factory.mktemp("server_tmp")


@pytest.fixture(scope="session")
def app_server(server_tmp):
    """`python app.py` on a free localhost port, working in the test's TMPDIR."""
    from fmblur.bench.load import start_app, stop_app

    server, url = start_app({"TMPDIR": str(server_tmp)})
    yield server, url
    stop_app(server)


@pytest.fixture(scope="session")
def app_url(app_server) -> str:
    return app_server[1]


@pytest.fixture(scope="session")
def client(app_url):
    from gradio_client import Client

    return Client(app_url, verbose=False)
