"""A real browser (Debian's chromium driven by Playwright) uploads a phantom slice and sees the result."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.serve.conftest import dicom_bytes, png_bytes, zip_bytes

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = pytest.mark.browser


@pytest.fixture()
def page():
    if not CHROMIUM.exists():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{CHROMIUM} is missing (required when CI=true: apt-get install chromium)")
        pytest.skip(f"{CHROMIUM} not installed")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            tab = browser.new_page()
            tab.set_default_timeout(60_000)
            yield tab
        finally:
            browser.close()


def test_upload_slice_shows_prediction_and_overlay(page, live_server: str, tmp_path: Path) -> None:
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    slice_png = tmp_path / "phantom.png"
    slice_png.write_bytes(png_bytes())

    page.goto(live_server + "/")
    page.wait_for_function("document.getElementById('model-line').textContent.includes('resnet10t')")
    page.set_input_files("#file-input", str(slice_png))
    page.wait_for_function("document.getElementById('prediction').textContent.length > 0")

    predicted = page.inner_text("#prediction")
    assert any(name in predicted for name in ("COVID-19", "Healthy", "Pneumonia"))
    assert page.locator("#bars .bar").count() == 3
    assert page.locator("#bars .bar.top").count() == 1
    overlay = page.locator("#overlay")
    assert overlay.is_visible()
    assert overlay.get_attribute("src").startswith("data:image/png;base64,")
    loaded = page.evaluate(
        "(() => { const o = document.getElementById('overlay'); return o.complete && o.naturalWidth; })()"
    )
    assert loaded == 48  # the heatmap decoded at the slice's own size
    page.fill("#opacity", "80")
    page.dispatch_event("#opacity", "input")
    assert page.evaluate("getComputedStyle(document.getElementById('overlay')).opacity") == "0.8"
    assert page.locator("#series").is_hidden()
    assert not errors, errors
    assert all(url.startswith(live_server) or url.startswith("data:") for url in requests), requests


def test_upload_series_shows_a_strip(page, live_server: str, tmp_path: Path) -> None:
    archive = tmp_path / "ct.zip"
    archive.write_bytes(zip_bytes({f"IM{k}": dicom_bytes(k) for k in range(3)}))
    page.goto(live_server + "/")
    page.set_input_files("#file-input", str(archive))
    page.wait_for_function("document.querySelectorAll('#strip .thumb').length === 3")
    assert page.locator("#series").is_visible()
    page.locator("#strip .thumb").nth(2).click()
    assert "ct.zip:IM2" in page.inner_text("#slice-caption")
    assert page.locator("#strip .thumb.selected").count() == 1


def test_bad_upload_shows_the_error(page, live_server: str, tmp_path: Path) -> None:
    bad = tmp_path / "notes.png"
    bad.write_bytes(b"just text")
    page.goto(live_server + "/")
    page.set_input_files("#file-input", str(bad))
    page.wait_for_function("document.getElementById('status').className === 'error'")
    assert "not a supported file" in page.inner_text("#status")
