"""Kill -9 mid-work, run the same command again: the result equals an uninterrupted run.

The real console script runs as a subprocess and is killed with SIGKILL while it works
(no handler runs, nothing is flushed): ``impacts predict`` in the middle of a scene's
probability raster, ``impacts review import`` between its database commits.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio

from tests.conftest import tiny_bundle
from tiling.config import SynthConfig
from tiling.synth import synth_scenes

pytestmark = pytest.mark.slow

SCENE_SIZE = (1024, 768)
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


def _impacts() -> list[str]:
    """The installed console script, as a user runs it."""
    script = Path(sys.executable).with_name("impacts")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "impacts.cli"]


def _kill_when(command: list[str], ready: Callable[[], bool], timeout_s: float = 120) -> None:
    """Start ``command``, SIGKILL it as soon as ``ready()`` holds; fail if it never does."""
    process = subprocess.Popen(command, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + timeout_s
        while not ready():
            if process.poll() is not None:
                stderr = process.stderr.read().decode() if process.stderr else ""
                pytest.fail(f"the command ended before it could be killed: {stderr[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail("the command never reached the point to kill it at")
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=60)
        if process.stderr:
            process.stderr.close()
    assert process.returncode == -signal.SIGKILL


def _run(command: list[str]) -> str:
    result = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two 1024x768 scenes: big enough that predicting one takes a moment."""
    out = tmp_path_factory.mktemp("kill-scenes")
    synth_scenes(out, SynthConfig(count=2, seed=21, size=SCENE_SIZE))
    return out


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_bundle(tmp_path_factory.mktemp("kill-bundle") / "bundle", "kill-test")


def _scene_names(scenes: Path) -> list[str]:
    return sorted(p.stem for p in scenes.glob("*.tif") if not p.stem.endswith("_mask"))


def test_predict_killed_mid_scene_then_run_again_equals_an_uninterrupted_run(
    scenes: Path, bundle: Path, tmp_path: Path
) -> None:
    first, second = _scene_names(scenes)

    def predict(out: Path) -> list[str]:
        return [
            *_impacts(),
            "-q",
            "predict",
            "--model",
            str(bundle),
            str(scenes),
            "--out",
            str(out),
            "--window-px",
            "128",
            "--overlap-px",
            "32",
        ]

    # The uninterrupted run goes on beside the others (they share nothing but the bundle).
    reference = subprocess.Popen(
        predict(tmp_path / "reference"), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    out = tmp_path / "killed"
    raster_in_progress = out / f"{second}_prob.tif.partial"
    _kill_when(predict(out), raster_in_progress.is_file)
    assert (out / f"{first}_predict.json").is_file(), "the first scene was finished"
    assert not (out / f"{second}_predict.json").exists() and not (out / f"{second}_prob.tif").exists()

    resumed = _run(predict(out))
    assert f"{first}" in resumed and "resumed" in resumed.split(first)[1].splitlines()[0]
    assert "done" in resumed.split(second)[1].splitlines()[0], "the killed scene is predicted again"
    _, stderr = reference.communicate(timeout=300)
    assert reference.returncode == 0, stderr.decode()[-3000:]

    assert not list(out.glob("*.partial")) and not list(out.glob(".*.partial")), "no leftovers"
    for scene in (first, second):
        got, want = (
            out / f"{scene}_detections.geojson",
            tmp_path / "reference" / f"{scene}_detections.geojson",
        )
        assert json.loads(got.read_text()) == json.loads(want.read_text())
        assert json.loads(got.read_text())["features"], "the untrained model detects something to compare"
        assert (out / f"{scene}_detections.csv").read_text() == (
            tmp_path / "reference" / f"{scene}_detections.csv"
        ).read_text()
        with (
            rasterio.open(out / f"{scene}_prob.tif") as a,
            rasterio.open(tmp_path / "reference" / f"{scene}_prob.tif") as b,
        ):
            assert (a.transform, a.crs) == (b.transform, b.crs)
            np.testing.assert_array_equal(a.read(1), b.read(1))


def _detections(db: Path) -> tuple[list[str], int, int]:
    """Every detection key (repeats kept), detections without images, and 'add' audit rows."""
    with sqlite3.connect(db) as conn:
        keys = [k for (k,) in conn.execute("SELECT key FROM detections ORDER BY key")]
        no_images = conn.execute(
            "SELECT count(*) FROM detections d LEFT JOIN detection_images i ON i.detection_id = d.id "
            "WHERE i.detection_id IS NULL"
        ).fetchone()[0]
        adds = conn.execute("SELECT count(*) FROM audit WHERE action = 'add'").fetchone()[0]
    return keys, no_images, adds


def _count(db: Path) -> int:
    """Committed detections, read while the importer writes (0 until the tables exist)."""
    if not db.is_file():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return int(conn.execute("SELECT count(*) FROM detections").fetchone()[0])
    except sqlite3.OperationalError:  # not migrated yet
        return 0


def _many_detections(scenes: Path, path: Path, per_scene: int) -> int:
    """A predict-like GeoJSON with ``per_scene`` small boxes per scene; returns the count."""
    rng = np.random.default_rng(0)
    features = []
    for scene in _scene_names(scenes):
        height, width = SCENE_SIZE
        for k in range(per_scene):
            r0, c0 = int(rng.integers(0, height - 20)), int(rng.integers(0, width - 20))
            r1, c1 = r0 + int(rng.integers(0, 19)), c0 + int(rng.integers(0, 19))
            props = {
                "id": f"{scene}-{k:05d}",
                "scene": scene,
                "row_min": r0,
                "col_min": c0,
                "row_max": r1,
                "col_max": c1,
                "centroid_row": (r0 + r1) / 2,
                "centroid_col": (c0 + c1) / 2,
                "centroid_x": 0.0,
                "centroid_y": 0.0,
                "area_px": (r1 - r0 + 1) * (c1 - c0 + 1),
                "score": 0.7,
                "model_version": "kill-test",
            }
            features.append({"type": "Feature", "id": props["id"], "geometry": None, "properties": props})
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return len(features)


def test_review_import_killed_midway_then_run_again_loses_and_repeats_nothing(
    scenes: Path, tmp_path: Path
) -> None:
    geojson = tmp_path / "all_detections.geojson"
    total = _many_detections(scenes, geojson, per_scene=700)

    def review_import(db: Path) -> list[str]:
        return [
            *_impacts(),
            "-q",
            "review",
            "import",
            str(geojson),
            "--scenes",
            str(scenes),
            "--db",
            f"sqlite:///{db}",
            "--crop-px",
            "32",
            "--context-px",
            "64",
        ]

    db = tmp_path / "killed.db"
    counts: list[int] = []

    def some_committed() -> bool:
        counts.append(_count(db))
        return counts[-1] > 0

    _kill_when(review_import(db), some_committed)
    assert 0 < counts[-1] < total, f"killed with {counts[-1]} of {total} imported: not mid-import"

    output = _run(review_import(db))
    match = re.search(r"(\d+) new detections, (\d+) already queued", output)
    assert match, output
    added, existing = int(match.group(1)), int(match.group(2))
    assert added + existing == total and existing >= counts[-1] and added > 0
    _run(review_import(tmp_path / "fresh.db"))

    keys, no_images, adds = _detections(db)
    fresh_keys, _, _ = _detections(tmp_path / "fresh.db")
    assert len(keys) == len(set(keys)) == total, "each detection once"
    assert keys == fresh_keys, "the same detections as an uninterrupted import"
    assert no_images == 0 and adds == total, "every detection has its views and one 'add' in the audit"
