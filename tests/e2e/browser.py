"""Real headless Chromium for the browser tests, and an app server for it to talk to.

Debian's ``chromium`` is driven by Selenium through Debian's ``chromium-driver`` (always the
same version as the browser: apt upgrades them together); ``make browser`` installs both.
When they are missing the tests are skipped, unless ``IMPACTS_REQUIRE_BROWSER=1`` (as in
``make test``), which turns the skip into a failure that says to run ``make browser``.

Typical use in a test module::

    @pytest.fixture(scope="module")
    def base_url() -> Iterator[str]:
        with serve_asgi(create_app(settings), ready_path="/healthz") as url:
            yield url

    @pytest.fixture
    def driver(tmp_path: Path) -> Iterator[WebDriver]:
        with headless_chromium(downloads=tmp_path / "downloads") as driver:
            yield driver

    def test_something(driver: WebDriver, base_url: str) -> None:
        driver.get(f"{base_url}/login")
        driver.find_element(By.NAME, "name").send_keys("ada")
        ...
        press_keys(driver, "a")          # a keyboard shortcut, sent to the focused element
        wait_for_text(driver, "#status", "accepted")
        assert console_errors(driver) == []

Environment: ``IMPACTS_CHROMIUM`` and ``IMPACTS_CHROMEDRIVER`` point at other binaries
(a chromedriver of the same major version as the browser).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import uvicorn
from selenium import webdriver
from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

__all__ = [
    "REQUIRE_ENV",
    "VIEWPORT",
    "BrowserPaths",
    "console_errors",
    "find_browser",
    "headless_chromium",
    "press_keys",
    "require_browser",
    "serve_asgi",
    "wait_for_download",
    "wait_for_text",
    "wait_until",
]

REQUIRE_ENV = "IMPACTS_REQUIRE_BROWSER"
VIEWPORT = (1280, 860)
# Generous: a 2-core CI machine also runs TensorFlow tests while a page loads.
TIMEOUT_S = 20.0

# Debian: /usr/bin/chromium is a shell wrapper (adds extension flags, warns on some /dev/shm
# set-ups); the binary itself is /usr/lib/chromium/chromium.
_CHROMIUM_CANDIDATES = ("/usr/lib/chromium/chromium", "chromium", "chromium-browser")
_CHROMEDRIVER_CANDIDATES = ("/usr/bin/chromedriver", "chromedriver")

# Flags for a root user in a container without a display, GPU or network.
_CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",  # the setuid/user-namespace sandbox cannot run as root in a container
    "--disable-dev-shm-usage",  # containers often have a 64 MB /dev/shm
    "--disable-gpu",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-extensions",
    "--disable-background-networking",  # no calls home (there is no network in CI)
    "--disable-component-update",
    "--disable-sync",
    "--disable-search-engine-choice-screen",
    "--password-store=basic",
    "--mute-audio",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
    "--lang=en-US",
)

T = TypeVar("T")


@dataclass(frozen=True)
class BrowserPaths:
    """Where the browser and its WebDriver are."""

    chromium: Path
    chromedriver: Path


def _first_executable(env: str, candidates: tuple[str, ...]) -> Path | None:
    override = os.environ.get(env)
    for name in (override,) if override else candidates:
        found = shutil.which(name)
        if found:
            return Path(found)
    return None


def find_browser() -> BrowserPaths | None:
    """Find Chromium and chromedriver.

    Returns:
        Their paths, or None when either is missing.
    """
    chromium = _first_executable("IMPACTS_CHROMIUM", _CHROMIUM_CANDIDATES)
    chromedriver = _first_executable("IMPACTS_CHROMEDRIVER", _CHROMEDRIVER_CANDIDATES)
    if chromium is None or chromedriver is None:
        return None
    return BrowserPaths(chromium=chromium, chromedriver=chromedriver)


def require_browser() -> BrowserPaths:
    """Find Chromium and chromedriver, or skip the test (fail it under ``IMPACTS_REQUIRE_BROWSER=1``).

    Returns:
        Their paths.
    """
    paths = find_browser()
    if paths is None:
        message = (
            "headless Chromium and chromedriver are not installed: run `make browser` "
            "(Debian packages chromium and chromium-driver), or set IMPACTS_CHROMIUM and IMPACTS_CHROMEDRIVER"
        )
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{message} ({REQUIRE_ENV}=1)", pytrace=False)
        pytest.skip(message)
    return paths


@contextmanager
def headless_chromium(
    *,
    downloads: Path | None = None,
    viewport: tuple[int, int] = VIEWPORT,
    log_path: Path | None = None,
) -> Iterator[WebDriver]:
    """Start headless Chromium (skipping the test when it is not installed) and quit it after.

    Args:
        downloads: folder for downloaded files (created); downloads are accepted without a prompt.
        viewport: page size in CSS pixels; screenshots have exactly this size.
        log_path: file for chromedriver's verbose log (for debugging a failing test).

    Yields:
        The Selenium driver, with the browser's console log available to `console_errors`.
    """
    paths = require_browser()
    options = webdriver.ChromeOptions()
    options.binary_location = str(paths.chromium)
    for flag in _CHROMIUM_FLAGS:
        options.add_argument(flag)
    width, height = viewport
    options.add_argument(f"--window-size={width},{height}")
    prefs: dict[str, Any] = {
        "credentials_enable_service": False,
        "profile.password_manager_enabled": False,
        "profile.password_manager_leak_detection": False,
    }
    if downloads is not None:
        downloads.mkdir(parents=True, exist_ok=True)
        prefs |= {
            "download.default_directory": str(downloads.resolve()),
            "download.prompt_for_download": False,
            "download.directory_upgrade": True,
        }
    options.add_experimental_option("prefs", prefs)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(
        str(paths.chromedriver),
        service_args=["--verbose"] if log_path else None,
        log_output=str(log_path) if log_path else None,
    )
    driver = webdriver.Chrome(options=options, service=service)
    try:
        # --window-size sizes the window; headless=new keeps room for (invisible) browser
        # chrome, so the page would be ~140 px shorter. Pin the page size itself.
        driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        if downloads is not None:
            driver.execute_cdp_cmd(
                "Browser.setDownloadBehavior",
                {"behavior": "allow", "downloadPath": str(downloads.resolve()), "eventsEnabled": True},
            )
        driver.set_page_load_timeout(60)
        driver.set_script_timeout(30)
        yield driver
    finally:
        driver.quit()


def wait_until(
    driver: WebDriver,
    condition: Callable[[WebDriver], T | None],
    *,
    timeout: float = TIMEOUT_S,
    what: str = "",
) -> T:
    """Wait until ``condition(driver)`` returns something truthy.

    Args:
        driver: the browser.
        condition: called every 0.1 s; a falsy result or a WebDriver exception (element not
            there yet, stale) means "not yet".
        timeout: seconds to wait.
        what: what is being waited for, for the failure message.

    Returns:
        The condition's first truthy result.

    Raises:
        AssertionError: when it did not happen in time (with the page's URL and visible text).
    """
    try:
        wait = WebDriverWait(driver, timeout, poll_frequency=0.1, ignored_exceptions=(WebDriverException,))
        result = wait.until(condition)
    except TimeoutException:
        try:
            page = driver.find_element(By.TAG_NAME, "body").text[:2000]
        except WebDriverException:
            page = "(no page)"
        raise AssertionError(
            f"timed out after {timeout:g} s waiting for {what or condition!r} on {driver.current_url}; page text:\n{page}"
        ) from None
    assert result is not None  # until() returns only a truthy result
    return result


def wait_for_text(driver: WebDriver, css: str, text: str, *, timeout: float = TIMEOUT_S) -> str:
    """Wait until the element matching ``css`` contains ``text``.

    Args:
        driver: the browser.
        css: CSS selector of the element.
        text: the (sub)string to wait for in its visible text.
        timeout: seconds to wait.

    Returns:
        The element's whole visible text.
    """

    def contains(d: WebDriver) -> str | None:
        found = d.find_element(By.CSS_SELECTOR, css).text
        return found if text in found else None

    return wait_until(driver, contains, timeout=timeout, what=f"{text!r} in {css}")


def press_keys(driver: WebDriver, *keys: str) -> None:
    """Type keys into whatever has the focus, like a user would (keydown, keypress, keyup).

    Args:
        driver: the browser.
        keys: characters or `selenium.webdriver.common.keys.Keys` values, pressed one by one.
    """
    ActionChains(driver).send_keys(*keys).perform()


def console_errors(driver: WebDriver) -> list[str]:
    """Errors the page logged since the last call (uncaught JS errors, failed loads, console.error).

    Args:
        driver: the browser.

    Returns:
        One message per error; reading them clears the log.
    """
    return [entry["message"] for entry in driver.get_log("browser") if entry.get("level") == "SEVERE"]


def wait_for_download(folder: Path, name: str, *, timeout: float = TIMEOUT_S) -> Path:
    """Wait until a download has finished.

    Args:
        folder: the ``downloads`` folder given to `headless_chromium`.
        name: the file's name (Chromium writes ``NAME.crdownload`` until it is complete).
        timeout: seconds to wait.

    Returns:
        The downloaded file's path.

    Raises:
        AssertionError: when it is not there in time (with the folder's contents).
    """
    path = folder / name
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_file() and not (folder / f"{name}.crdownload").exists():
            return path
        time.sleep(0.1)
    present = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    raise AssertionError(f"{name} was not downloaded within {timeout:g} s; {folder} holds {present}")


@contextmanager
def serve_asgi(app: Any, *, ready_path: str = "/", timeout: float = 120.0) -> Iterator[str]:
    """Serve an ASGI app with uvicorn on 127.0.0.1 (a free port) in a thread of this process.

    Args:
        app: the ASGI application (e.g. FastAPI); its lifespan runs as in production.
        ready_path: a path that answers 2xx/3xx once the app is ready.
        timeout: seconds to wait for readiness.

    Yields:
        The base URL, e.g. ``http://127.0.0.1:41234`` (no trailing slash).

    Raises:
        RuntimeError: when the server does not become ready, or does not stop.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="auto")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="uvicorn-e2e", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while not _answers(url + ready_path):
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the app did not become ready at {url}{ready_path}")
            time.sleep(0.05)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
    if thread.is_alive():
        raise RuntimeError("uvicorn did not stop within 30 s")


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code < 400
    except httpx.TransportError:
        return False
