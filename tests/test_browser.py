"""End to end in a real browser: Debian's Chromium driven by Playwright (no browser download).

Opens the app, uploads an example photo and the test clip, runs them, and checks that the page shows
results that differ from the inputs where the faces are. Screenshots go to outputs/e2e/.
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO

CHROMIUM = os.environ.get("FMBLUR_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = REPO / "outputs" / "e2e"
CLIP = REPO / "tests" / "data" / "selfie_2s_audio.mp4"
# Chromium here has no network but loopback: these flags stop it from reaching out at start.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def page(app_url):
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"Chromium not found at {CHROMIUM}; .ci/run installs Debian's chromium")
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.goto(app_url, wait_until="domcontentloaded")
        page.get_by_role("button", name="Anonymize", exact=True).wait_for(timeout=60000)
        yield page
        browser.close()


def fetch(page, locator: str, attribute: str = "src") -> bytes:
    element = page.locator(locator)
    element.wait_for(timeout=120000)
    source = element.get_attribute(attribute)
    assert source, f"{locator} has no {attribute}"
    response = page.request.get(source)
    assert response.ok, response.status
    return response.body()


def test_photo_in_the_browser(page, example):
    page.get_by_role("tab", name="Anonymize").click()
    page.locator("#photo-input input[type=file]").set_input_files(str(example.path))
    page.get_by_role("button", name="Anonymize", exact=True).click()
    page.get_by_text("face(s) hidden").wait_for(timeout=120000)
    shown = np.asarray(Image.open(io.BytesIO(fetch(page, "#anonymized-output img"))).convert("RGB"))
    page.screenshot(path=str(SCREENSHOTS / "photo.png"), full_page=True)
    assert shown.shape == example.image.shape
    for x1, y1, x2, y2 in example.boxes.astype(int):
        assert np.any(shown[y1:y2, x1:x2] != example.image[y1:y2, x1:x2], axis=2).mean() > 0.8
    assert np.all(shown == example.image, axis=2).mean() > 0.5


def test_video_in_the_browser(page, tmp_path):
    page.get_by_role("tab", name="Video").click()
    page.locator("#video-input input[type=file]").set_input_files(str(CLIP))
    page.get_by_role("button", name="Anonymize video").click()
    page.get_by_text("fps overall").wait_for(timeout=180000)
    result = tmp_path / "shown.mp4"
    result.write_bytes(fetch(page, "#video-output video"))
    page.screenshot(path=str(SCREENSHOTS / "video.png"), full_page=True)
    with av.open(str(CLIP)) as original, av.open(str(result)) as shown:
        pairs = list(zip(original.decode(video=0), shown.decode(video=0), strict=False))
        assert shown.streams.video[0].frames == 60
    changed = [np.abs(a.to_ndarray(format="rgb24").astype(int) - b.to_ndarray(format="rgb24")).mean() for a, b in pairs]
    assert len(pairs) == 60 and min(changed) > 2, "every frame shown differs from the input"


def test_compare_models_and_live_tabs_in_the_browser(page, example):
    """Compare five detectors on an example (all panels and the table arrive); the Models tab shows a card with
    measured figures; the Live tab loads and, without a camera (as here), shows its message."""
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.get_by_role("tab", name="Compare").click()
    page.locator("#compare-input input[type=file]").set_input_files(str(example.path))
    from fmblur.results import menu_labels

    labels = menu_labels()  # measured detectors carry their committed face-mask val AP@.5 in the label
    for name in ("retinaface-masked", "mtcnn"):
        page.get_by_label(labels.get(name, name), exact=True).check()
    page.get_by_role("button", name="Compare", exact=True).click()
    page.get_by_text("| mtcnn |", exact=False).or_(page.get_by_role("cell", name="mtcnn")).first.wait_for(
        timeout=180000
    )
    page.screenshot(path=str(SCREENSHOTS / "compare.png"), full_page=True)
    assert page.get_by_role("cell", name="retinaface-masked", exact=True).count() == 1
    page.get_by_role("tab", name="Models").click()
    page.locator("#model-card").get_by_text("face-mask val").first.wait_for(timeout=30000)
    page.locator("#privacy-sweep").wait_for(timeout=30000)
    page.get_by_role("tab", name="Live").click()
    page.locator("#live-message").get_by_text("No camera?").wait_for(timeout=30000)
    page.screenshot(path=str(SCREENSHOTS / "live.png"), full_page=True)
    assert errors == []
