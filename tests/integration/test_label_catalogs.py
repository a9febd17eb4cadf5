"""Synthetic scenes labelled by catalogs instead of masks: tiling, and whole-scene
evaluation that finds the impacts the objects list finds."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import rasterio
import shapely
from pyogrio.raw import write as write_vector

from tests.conftest import copy_scenes, tiny_config
from tiling.config import TileConfig
from tiling.crs import to_lonlat
from tiling.io import find_scenes, open_scene, read_window
from tiling.labels import FOOTPRINT_RADII
from tiling.patchset import read_manifest
from tiling.pipeline import tile_folder
from tiling.synth import load_objects
from tiling.tfrecord import decode_example, read_record_at
from training.config import EvalConfig
from training.evaluate_scenes import evaluate_scenes, find_eval_scenes
from training.predict import PredictConfig


def _scene(scenes_dir: Path) -> str:
    return sorted(p.stem for p in scenes_dir.glob("*.tif") if not p.stem.endswith("_mask"))[0]


def _label(folder: Path, name: str, form: str) -> Path:
    """Replace the scene's mask by a catalog of its objects list's impacts, each a point whose
    footprint radius is the impact's ``radius_px``."""
    with rasterio.open(folder / f"{name}.tif") as ds:
        crs, res_m = ds.crs, ds.transform.a
    rows = [r for r in csv.DictReader((folder / f"{name}_objects.csv").open()) if r["kind"] == "impact"]
    xs, ys = [float(r["x"]) for r in rows], [float(r["y"]) for r in rows]
    diameters = [2 * float(r["radius_px"]) * res_m / FOOTPRINT_RADII for r in rows]
    (folder / f"{name}_mask.tif").unlink(missing_ok=True)
    path = folder / f"{name}_labels.{form}"
    if form == "csv":  # map coordinates of the scene's CRS
        lines = [f"{x!r},{y!r},{d!r}" for x, y, d in zip(xs, ys, diameters, strict=True)]
        path.write_text("\n".join(["x,y,diameter_m", *lines]) + "\n")
    elif form == "geojson":  # lon/lat on the Mars sphere, no CRS member
        lons, lats = to_lonlat(crs, xs, ys)
        features = [
            {
                "type": "Feature",
                "properties": {"diameter_m": d},
                "geometry": {"type": "Point", "coordinates": [a, b]},
            }
            for a, b, d in zip(lons, lats, diameters, strict=True)
        ]
        path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    else:  # a GeoPackage in the scene's CRS
        points = np.array(
            [shapely.to_wkb(shapely.Point(x, y)) for x, y in zip(xs, ys, strict=True)], dtype=object
        )
        write_vector(
            path,
            geometry=points,
            field_data=[np.array(diameters)],
            fields=["diameter_m"],
            geometry_type="Point",
            crs=crs.to_wkt(),
            driver="GPKG",
        )
    return path


@pytest.mark.parametrize("form", ["geojson", "gpkg", "csv"])
def test_a_labelled_scene_tiles_with_positives_where_the_impacts_are(
    form: str, scenes_dir: Path, tmp_path: Path
) -> None:
    name = _scene(scenes_dir)
    folder = copy_scenes(scenes_dir, tmp_path / "scenes", [name])
    catalog = _label(folder, name, form)
    [files] = find_scenes(folder)
    assert files.mask == catalog
    [outcome] = tile_folder(folder, tmp_path / "patches", TileConfig(workers=1, seed=3))
    assert outcome.status == "done", outcome.message
    impacts = [o for o in load_objects(folder / f"{name}_objects.csv") if o.kind == "impact"]
    assert 0 < outcome.counts["impacts"] <= len(impacts)
    records = read_manifest(tmp_path / "patches" / "manifest.csv")
    positives = [r for r in records if r.kind == "positive"]
    for o in impacts:
        assert any(r.row <= o.row < r.row + 128 and r.col <= o.col < r.col + 128 for r in positives), o
    with open_scene(files) as (_, labels, _info):
        for r in records:
            example = decode_example(read_record_at(tmp_path / "patches" / r.shard, r.offset))
            stored = example["mask"]
            assert isinstance(stored, bytes)
            mask = np.frombuffer(stored, np.uint8).reshape(128, 128)
            assert np.array_equal(mask, read_window(labels, r.row, r.col, 128, 128))
            assert (r.kind == "positive") == bool(mask.any())


def test_a_mask_wins_over_a_catalog_and_a_scene_without_labels_is_skipped(
    scenes_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    names = sorted(p.stem for p in scenes_dir.glob("*.tif") if not p.stem.endswith("_mask"))[:2]
    folder = copy_scenes(scenes_dir, tmp_path / "scenes", names)
    mask = folder / f"{names[0]}_mask.tif"
    (folder / f"{names[0]}_labels.csv").write_text("x,y,diameter_m\n")
    (folder / f"{names[1]}_mask.tif").unlink()
    with caplog.at_level(logging.WARNING, logger="tiling.labels"):
        scenes = find_scenes(folder)
    assert [s.mask for s in scenes] == [mask, None]
    assert "using the mask" in caplog.text
    outcomes = tile_folder(folder, tmp_path / "patches", TileConfig(workers=1, seed=3))
    assert [o.status for o in outcomes] == ["done", "skipped"]
    assert f"{names[1]}_labels.geojson|gpkg|csv" in outcomes[1].message


class _Darkness:
    """A pixel-wise "model": darker is more likely an impact."""

    def predict_on_batch(self, batch: np.ndarray) -> np.ndarray:
        return np.clip(2.4 * (0.6 - batch), 0.0, 1.0).astype(np.float32)


def test_whole_scene_evaluation_with_labels_finds_the_impacts_the_objects_list_finds(
    scenes_dir: Path, tmp_path: Path
) -> None:
    name = _scene(scenes_dir)
    listed = copy_scenes(scenes_dir, tmp_path / "listed", [name])
    (listed / f"{name}_mask.tif").unlink()
    labelled = copy_scenes(scenes_dir, tmp_path / "labelled", [name])
    _label(labelled, name, "geojson")
    (labelled / f"{name}_objects.csv").unlink()
    bundle = SimpleNamespace(model=_Darkness(), version="darkness", config=tiny_config())
    cfg, windows = EvalConfig(threshold=0.5, min_area_px=4), PredictConfig(window_px=128, overlap_px=32)
    results, matches = {}, {}
    for folder in (listed, labelled):
        scenes = find_eval_scenes(folder)
        results[scenes[0].truth] = evaluate_scenes(bundle, scenes, cfg, tmp_path / folder.name, windows)
        with (tmp_path / folder.name / "matches" / f"{name}_matches.csv").open() as fh:
            matches[scenes[0].truth] = [
                (r["outcome"], r["impact"], r["radius_px"]) for r in csv.DictReader(fh)
            ]
    by_objects, by_labels = results["objects"]["per_scene"][name], results["labels"]["per_scene"][name]
    assert by_labels["truth"] == "labels"
    assert by_objects["impacts"] > 0 and by_objects["found"] > 0
    for key in ("impacts", "found", "duplicates", "false_candidates", "recall_by_size"):
        assert by_labels[key] == by_objects[key], key
    assert matches["labels"] == matches["objects"]
