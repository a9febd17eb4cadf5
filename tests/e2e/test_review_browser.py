"""The review UI in real headless Chromium: log in, review five detections with the keyboard,
undo one, export, and check that the exported files say what the analyst did.

The detections are planted objects of the synthetic scenes (impacts, craters, shadows),
imported from a predict-style GeoJSON by the real importer, so the crops show real pixels.
Another analyst (grace) has already rejected one of them, so the UI shows a conflict.
``IMPACTS_SCREENSHOT=1`` also saves the screenshot to ``docs/review.png`` (the README's).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi import FastAPI
from PIL import Image
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By

from service.review.importer import import_detections
from service.review.routes import install_review
from service.review.schemas import QueueFilter
from service.review.settings import ReviewSettings
from service.review.store import ReviewStore
from tests.e2e.browser import (
    VIEWPORT,
    console_errors,
    headless_chromium,
    press_keys,
    serve_asgi,
    wait_for_download,
    wait_for_text,
    wait_until,
)

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "ada-lovelace-1815"
MODEL = "unet-e2e"
# (kind of the planted object, score): the queue shows them by score, highest first.
PLAN = [
    ("impact", 0.97),
    ("shadow", 0.93),
    ("impact", 0.90),
    ("impact", 0.86),
    ("crater", 0.82),
    ("impact", 0.75),
    ("shadow", 0.70),
]


@dataclass
class Review:
    url: str
    ids: list[int]  # detection ids in queue order (PLAN order)
    store: ReviewStore


def _features(scenes_dir: Path) -> list[dict[str, object]]:
    """Predict-style features for the planted objects of PLAN (boxes around each object)."""
    scenes: list[list[dict[str, str]]] = []
    for path in sorted(scenes_dir.glob("*_objects.csv")):
        with path.open() as fh:
            scenes.append(
                [{**row, "scene": path.name.removesuffix("_objects.csv")} for row in csv.DictReader(fh)]
            )
    features = []
    used: set[tuple[str, str]] = set()
    for k, (kind, score) in enumerate(PLAN):
        # Spread the detections over the scenes (the k-th from scene k first), for per-scene progress.
        candidates = [o for j in range(len(scenes)) for o in scenes[(k + j) % len(scenes)]]
        o = next(o for o in candidates if o["kind"] == kind and (o["scene"], o["id"]) not in used)
        used.add((o["scene"], o["id"]))
        row, col, radius = float(o["row"]), float(o["col"]), max(float(o["radius_px"]), 3.0)
        box = {
            "row_min": max(int(row - radius), 0),
            "col_min": max(int(col - radius), 0),
            "row_max": min(int(row + radius), 899),
            "col_max": min(int(col + radius), 699),
        }
        props = {
            "id": f"{o['scene']}-{k:05d}",
            "scene": o["scene"],
            "centroid_row": row,
            "centroid_col": col,
            "centroid_x": float(o["x"]),
            "centroid_y": float(o["y"]),
            **box,
            "area_px": int(3.14 * radius * radius),
            "score": score,
            "model_version": MODEL,
        }
        features.append({"type": "Feature", "id": props["id"], "geometry": None, "properties": props})
    return features


@pytest.fixture(scope="module")
def review(scenes_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Review]:
    work = tmp_path_factory.mktemp("review-e2e")
    detections = work / "planted_detections.geojson"
    detections.write_text(json.dumps({"type": "FeatureCollection", "features": _features(scenes_dir)}))
    db_url = f"sqlite:///{work / 'review.db'}"
    store = ReviewStore.open(db_url)
    store.add_analyst("ada", PASSWORD)
    store.add_analyst("grace", "grace-hopper-1906")
    summary = import_detections(store, detections, scenes_dir)
    assert summary.added == len(PLAN)
    page = store.queue(QueueFilter(status=None, limit=200))
    ids = [d.id for d in page.items]
    assert [d.score for d in page.items] == [score for _, score in PLAN]
    store.decide(ids[2], "grace", "reject", "crater", "looks old to me")

    app = FastAPI()
    install_review(app, ReviewSettings(db_url=db_url, scenes_dir=scenes_dir, secure_cookies="false"))
    with serve_asgi(app, ready_path="/login") as url:
        yield Review(url, ids, store)
    store.close()


@pytest.fixture
def downloads(tmp_path: Path) -> Path:
    return tmp_path / "downloads"


@pytest.fixture
def driver(downloads: Path) -> Iterator[WebDriver]:
    with headless_chromium(downloads=downloads) as driver:
        yield driver


def _current(driver: WebDriver) -> int:
    return int(driver.find_element(By.ID, "detection").get_attribute("data-id") or 0)


def _wait_current(driver: WebDriver, detection_id: int) -> None:
    wait_until(driver, lambda d: _current(d) == detection_id, what=f"detection #{detection_id} shown")


def _images_loaded(driver: WebDriver) -> bool:
    return bool(
        driver.execute_script(
            "return [...document.images].every(i => i.complete && i.naturalWidth > 0)"
            " && document.getElementById('mask').width > 0"
        )
    )


def test_an_analyst_reviews_with_the_keyboard_undoes_and_exports(
    review: Review, driver: WebDriver, downloads: Path, tmp_path: Path
) -> None:
    ids = review.ids
    driver.get(f"{review.url}/review")
    assert driver.current_url.endswith("/login")  # no session yet

    driver.find_element(By.NAME, "name").send_keys("ada")
    driver.find_element(By.NAME, "password").send_keys(PASSWORD)
    driver.find_element(By.ID, "login").click()
    wait_until(
        driver, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready"), what="UI ready"
    )
    assert driver.current_url.endswith("/review")
    assert driver.find_element(By.ID, "analyst").text == "ada"
    _wait_current(driver, ids[0])
    assert driver.find_element(By.ID, "score").text == "0.970"
    wait_until(driver, lambda d: _images_loaded(d), what="crop, mask and context loaded")

    # m hides and shows the predicted mask; ? opens and closes the help.
    frame = driver.find_element(By.ID, "crop-frame")
    assert "show-mask" in (frame.get_attribute("class") or "")
    press_keys(driver, "m")
    assert "show-mask" not in (frame.get_attribute("class") or "")
    press_keys(driver, "m")
    assert "show-mask" in (frame.get_attribute("class") or "")
    press_keys(driver, "?")
    assert driver.find_element(By.ID, "help").is_displayed()
    press_keys(driver, "?")
    assert not driver.find_element(By.ID, "help").is_displayed()

    # Five decisions, each moving on to the next detection.
    press_keys(driver, "a")
    wait_for_text(driver, "#message", f"Accepted #{ids[0]}.")
    _wait_current(driver, ids[1])
    press_keys(driver, "r")
    assert "active" in (driver.find_element(By.ID, "reasons").get_attribute("class") or "")
    press_keys(driver, "2")
    wait_for_text(driver, "#message", f"Rejected #{ids[1]} as shadow.")
    _wait_current(driver, ids[2])
    assert "grace: rejected (crater)" in driver.find_element(By.ID, "others").text
    press_keys(driver, "u")
    wait_for_text(driver, "#message", f"Marked unsure #{ids[2]}.")
    _wait_current(driver, ids[3])
    press_keys(driver, "a")
    wait_for_text(driver, "#message", f"Accepted #{ids[3]}.")
    _wait_current(driver, ids[4])
    press_keys(driver, "r", "1")
    wait_for_text(driver, "#message", f"Rejected #{ids[4]} as crater.")
    _wait_current(driver, ids[5])

    # z withdraws the last decision (the crater rejection) and shows that detection again.
    press_keys(driver, "z")
    wait_for_text(driver, "#message", f"Undid rejected on #{ids[4]}.")
    _wait_current(driver, ids[4])
    assert driver.find_element(By.ID, "status").text == "pending"

    # Back (k, p) to the detection grace and ada disagree on: a conflict, both decisions shown.
    press_keys(driver, "k")
    _wait_current(driver, ids[3])
    press_keys(driver, "p")
    _wait_current(driver, ids[2])
    assert driver.find_element(By.ID, "conflict").is_displayed()
    assert driver.find_element(By.ID, "mine").text.startswith("unsure")
    # Progress bars per scene: decided / total, as the store counts them.
    progress = driver.find_element(By.ID, "progress").text
    for row in review.store.progress():
        assert f"{row.scene}\n{row.total - row.pending} / {row.total}" in progress

    wait_until(driver, lambda d: _images_loaded(d), what="images of the conflict loaded")
    shot = tmp_path / "review.png"
    assert driver.save_screenshot(str(shot))
    with Image.open(shot) as image:
        assert image.size == VIEWPORT
    if os.environ.get("IMPACTS_SCREENSHOT") == "1":
        (REPO / "docs").mkdir(exist_ok=True)
        shutil.copyfile(shot, REPO / "docs" / "review.png")

    # Export through the page's links; the files say exactly what was done.
    driver.find_element(By.ID, "export-geojson").click()
    accepted = json.loads(wait_for_download(downloads, "accepted.geojson").read_text())
    driver.find_element(By.ID, "export-negatives").click()
    with wait_for_download(downloads, "hard_negatives.csv").open() as fh:
        negatives = list(csv.DictReader(fh))
    driver.find_element(By.ID, "export-csv").click()
    with wait_for_download(downloads, "accepted.csv").open() as fh:
        accepted_rows = list(csv.DictReader(fh))

    assert sorted(f["properties"]["detection_id"] for f in accepted["features"]) == sorted([ids[0], ids[3]])
    assert {f["properties"]["analyst"] for f in accepted["features"]} == {"ada"}
    assert accepted["crs"]["properties"]["name"]  # the scene CRS, as WKT
    assert sorted(int(r["detection_id"]) for r in accepted_rows) == sorted([ids[0], ids[3]])
    # Only the shadow rejection: the crater rejection was undone, the unsure one is a conflict.
    assert [(int(r["detection_id"]), r["reason"], r["analyst"]) for r in negatives] == [
        (ids[1], "shadow", "ada")
    ]
    first = review.store.detection(ids[1])
    assert (int(negatives[0]["row_min"]), int(negatives[0]["col_max"])) == (first.row_min, first.col_max)
    assert review.store.detection(ids[4]).status == "pending"
    assert review.store.detection(ids[2]).status == "conflict"

    assert console_errors(driver) == []
