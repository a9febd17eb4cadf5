"""`impacts predict` on GeoTIFF scenes with a real (tiny) model bundle."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

from impacts.cli import main
from tiling.io import geotiff_profile
from tiling.synth import MARS_EQC

from ..conftest import copy_scenes


def _predict(bundle: Path, target: Path, out: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        main,
        [
            "-q",
            "predict",
            "--model",
            str(bundle),
            str(target),
            "--out",
            str(out),
            "--window-px",
            "128",
            "--overlap-px",
            "32",
            *args,
        ],
    )
    return result.exit_code, result.output


def test_prediction_outputs_sit_on_the_scene_grid(
    untrained_bundle: Path, scenes_dir: Path, tmp_path: Path
) -> None:
    scene = sorted(p for p in scenes_dir.glob("*.tif") if not p.stem.endswith("_mask"))[0]
    code, output = _predict(untrained_bundle, scene, tmp_path, "--threshold", "0.3")
    assert code == 0, output
    with rasterio.open(scene) as src, rasterio.open(tmp_path / f"{scene.stem}_prob.tif") as prob:
        assert (prob.height, prob.width, prob.crs, prob.transform) == (
            src.height,
            src.width,
            src.crs,
            src.transform,
        )
        assert prob.dtypes[0] == "uint8" and prob.block_shapes[0] == (256, 256)
        assert np.all(prob.read(1)[src.read(1) == 0] == 0), "no-data must have probability 0"
    geojson = json.loads((tmp_path / f"{scene.stem}_detections.geojson").read_text())
    rows = list(csv.DictReader((tmp_path / f"{scene.stem}_detections.csv").open()))
    assert geojson["type"] == "FeatureCollection" and len(geojson["features"]) == len(rows)
    assert (
        "eqc" in geojson["crs"]["properties"]["name"].lower()
        or "Equirectangular" in geojson["crs"]["properties"]["name"]
    )
    for row in rows:
        assert row["model_version"] == "untrained-test" and float(row["score"]) >= 0.3


def test_detections_land_at_the_right_map_coordinates(tmp_path: Path) -> None:
    from training.inference import predict_scene
    from training.predict import detection_records

    transform = rasterio.transform.Affine(6.0, 0, 1_000_000.0, 0, -6.0, 500_000.0)
    image = np.full((256, 256), 180, np.uint8)
    rr, cc = np.ogrid[:256, :256]
    image[(rr - 100) ** 2 + (cc - 170) ** 2 <= 64] = 10
    result = predict_scene(
        lambda r, n: image[r : r + n],
        256,
        256,
        lambda b: (b < 0.2).astype(np.float32),
        lambda rows, r: None,
        window_px=128,
        overlap_px=32,
        batch_size=4,
        threshold=0.5,
        scale=255.0,
        nodata=0.0,
        min_area_px=4,
    )
    (record,) = [r.properties() for r in detection_records(result.detections, "S", transform, "v")]
    assert (record["centroid_row"], record["centroid_col"]) == (100.0, 170.0)
    assert record["centroid_x"] == pytest.approx(1_000_000 + 170.5 * 6)
    assert record["centroid_y"] == pytest.approx(500_000 - 100.5 * 6)
    assert record["x_min"] == pytest.approx(1_000_000 + 162 * 6) and record["y_max"] == pytest.approx(
        500_000 - 92 * 6
    )
    assert record["area_m2"] == pytest.approx(record["area_px"] * 36)


def test_a_folder_is_resumable_and_a_bad_scene_does_not_stop_the_others(
    untrained_bundle: Path, scenes_dir: Path, tmp_path: Path
) -> None:
    scenes = copy_scenes(scenes_dir, tmp_path / "scenes")
    (scenes / "X09_000009_1800_XI_00N009W.tif").write_bytes(b"not a tiff")
    with rasterio.open(
        tmp_path / "scenes" / "small.tif",
        "w",
        **geotiff_profile(64, 64, "uint8", MARS_EQC, rasterio.transform.Affine(6.0, 0, 0, 0, -6.0, 0), 0),
    ) as ds:
        ds.write(np.ones((1, 64, 64), np.uint8))
    code, output = _predict(untrained_bundle, scenes, tmp_path / "out")
    assert code == 1 and "X09_000009_1800_XI_00N009W" in output and "smaller than a 128 px window" in output
    assert "Traceback" not in output
    done = sorted(p.name for p in (tmp_path / "out").glob("*_prob.tif"))
    assert len(done) == 5
    first = {p: p.stat().st_mtime_ns for p in (tmp_path / "out").glob("*_prob.tif")}
    code, output = _predict(untrained_bundle, scenes, tmp_path / "out")
    assert output.count("resumed") == 5
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "out").glob("*_prob.tif")} == first


def test_a_truncated_marker_means_the_scene_is_predicted_again(
    untrained_bundle: Path, scenes_dir: Path, tmp_path: Path
) -> None:
    scene = sorted(p for p in scenes_dir.glob("*.tif") if not p.stem.endswith("_mask"))[0]
    code, output = _predict(untrained_bundle, scene, tmp_path)
    assert code == 0, output
    marker = tmp_path / f"{scene.stem}_predict.json"
    detections = (tmp_path / f"{scene.stem}_detections.geojson").read_text()
    marker.write_text(marker.read_text()[:20])  # cut short, as by a kill in the old in-place write
    code, output = _predict(untrained_bundle, scene, tmp_path)
    assert code == 0 and "Traceback" not in output, output
    assert "done" in output and "resumed" not in output, "the scene is predicted again"
    assert json.loads(marker.read_text())["model_version"] == "untrained-test"
    assert (tmp_path / f"{scene.stem}_detections.geojson").read_text() == detections
    code, output = _predict(untrained_bundle, scene, tmp_path)
    assert "resumed" in output, "the repaired marker is trusted again"
    assert not list(tmp_path.glob("*.partial")) and not list(tmp_path.glob(".*.partial"))


def test_merging_is_part_of_the_settings_and_no_merging_keeps_old_markers(
    untrained_bundle: Path, scenes_dir: Path, tmp_path: Path
) -> None:
    import hashlib

    scene = sorted(p for p in scenes_dir.glob("*.tif") if not p.stem.endswith("_mask"))[0]
    code, output = _predict(untrained_bundle, scene, tmp_path, "--threshold", "0.3")
    assert code == 0, output
    marker = json.loads((tmp_path / f"{scene.stem}_predict.json").read_text())
    # The fingerprint of a run without merging is the one written before merging existed.
    stat = scene.stat()
    old_settings = {
        "window_px": 128,
        "overlap_px": 32,
        "batch_size": 8,
        "threshold": 0.3,
        "min_area_px": None,
    }
    old = [marker["model_version"], old_settings, 0.3, 4, stat.st_size, stat.st_mtime_ns]
    assert marker["fingerprint"] == hashlib.sha256(json.dumps(old).encode()).hexdigest()[:16]
    separate = marker["detections"]
    code, output = _predict(
        untrained_bundle, scene, tmp_path, "--threshold", "0.3", "--merge-distance-px", "4"
    )
    assert code == 0 and "done" in output, "another merge distance predicts again"
    merged = json.loads((tmp_path / f"{scene.stem}_predict.json").read_text())["detections"]
    assert merged <= separate
    code, output = _predict(
        untrained_bundle, scene, tmp_path, "--threshold", "0.3", "--merge-distance-px", "4"
    )
    assert "resumed" in output
    code, output = _predict(untrained_bundle, scene, tmp_path, "--merge-distance-px", "-1")
    assert code != 0 and "--merge-distance-px" in output
