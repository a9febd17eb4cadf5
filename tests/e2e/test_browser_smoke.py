"""The browser-test set-up works end to end: real headless Chromium against a real local server.

A tiny FastAPI page with a form, a keyboard shortcut and a download stands in for the review
UI, so that a failure here means the browser installation (``make browser``), not the UI.
"""

from __future__ import annotations

import html
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI, Form
from fastapi.responses import HTMLResponse, PlainTextResponse
from PIL import Image, ImageStat
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By

from tests.e2e.browser import (
    REQUIRE_ENV,
    VIEWPORT,
    console_errors,
    headless_chromium,
    press_keys,
    require_browser,
    serve_asgi,
    wait_for_download,
    wait_for_text,
)

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>smoke</title>
<link rel="icon" href="data:,">
<style>body { font: 24px sans-serif; margin: 40px; } h1 { font-size: 64px; }</style>
</head><body>
<h1>Browser smoke test</h1>
<form method="post" action="/greet">
  <label>Name <input id="name" name="name" autocomplete="off"></label>
  <button id="send" type="submit">Send</button>
</form>
<p>Last shortcut: <span id="shortcut">none</span></p>
<a id="export" href="/export.csv" download>export</a>
<script>
document.addEventListener("keydown", (event) => {
  if (event.target.closest("input, textarea")) return;  // typing is not a shortcut
  if (event.key === "a") document.getElementById("shortcut").textContent = "accept";
});
</script>
</body></html>"""

CSV = "id,decision\n1,accept\n"


def _app() -> FastAPI:
    app = FastAPI()

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return PAGE

    @app.post("/greet", response_class=HTMLResponse)
    def greet(name: str = Form(...)) -> str:
        head = '<!doctype html><title>hi</title><link rel="icon" href="data:,">'
        return f'{head}<p id="hello">Hello, {html.escape(name)}</p>'

    @app.get("/export.csv", response_class=PlainTextResponse)
    def export() -> PlainTextResponse:
        return PlainTextResponse(CSV, headers={"Content-Disposition": 'attachment; filename="export.csv"'})

    return app


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with serve_asgi(_app()) as url:
        yield url


@pytest.fixture
def downloads(tmp_path: Path) -> Path:
    return tmp_path / "downloads"


@pytest.fixture
def driver(downloads: Path) -> Iterator[WebDriver]:
    with headless_chromium(downloads=downloads) as driver:
        yield driver


def test_a_page_is_typed_into_driven_by_keyboard_screenshotted_and_downloaded_from(
    driver: WebDriver, base_url: str, downloads: Path, tmp_path: Path
) -> None:
    driver.get(base_url)
    assert driver.title == "smoke"

    field = driver.find_element(By.ID, "name")
    field.send_keys("Ada a")  # an 'a' typed into a field is text, not the shortcut
    assert field.get_attribute("value") == "Ada a"
    assert driver.find_element(By.ID, "shortcut").text == "none"

    driver.execute_script("document.activeElement.blur()")
    press_keys(driver, "a")
    wait_for_text(driver, "#shortcut", "accept")

    shot = tmp_path / "page.png"
    assert driver.save_screenshot(str(shot))
    assert shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(shot) as image:
        assert image.size == VIEWPORT
        gray = image.convert("L")
        # Mostly white page with rendered (dark) text: glyphs, not an empty or uniform image.
        dark = sum(gray.histogram()[:128])
        assert 2_000 < dark < 0.2 * VIEWPORT[0] * VIEWPORT[1]
        assert ImageStat.Stat(gray).stddev[0] > 10

    driver.find_element(By.ID, "export").click()
    assert wait_for_download(downloads, "export.csv").read_text() == CSV

    field = driver.find_element(By.ID, "name")
    field.clear()
    field.send_keys("Grace")
    driver.find_element(By.ID, "send").click()
    assert wait_for_text(driver, "#hello", "Hello, Grace") == "Hello, Grace"

    assert console_errors(driver) == []


def test_console_errors_are_reported(driver: WebDriver, base_url: str) -> None:
    driver.get(base_url)
    driver.execute_script("setTimeout(() => { throw new Error('boom from the page'); }, 0)")
    driver.get(base_url)  # the error is logged by then
    assert any("boom from the page" in message for message in console_errors(driver))


def test_a_missing_browser_skips_or_fails_as_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMPACTS_CHROMIUM", "/nonexistent/chromium")
    monkeypatch.delenv(REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="make browser"):
        require_browser()
    monkeypatch.setenv(REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="make browser"):
        require_browser()
