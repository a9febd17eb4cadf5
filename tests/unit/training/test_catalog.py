"""`impacts catalog`: every scene's detections in one GeoPackage/GeoParquet, in Mars lon/lat."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pyogrio.raw
import pytest
import rasterio
import shapely
from click.testing import CliRunner
from rasterio.transform import Affine

from impacts.cli import main
from impacts.detections import CSV_COLUMNS, Detection, feature_collection
from tiling.crs import MARS_EQC, MARS_RADIUS_M
from tiling.io import geotiff_profile

X0_M, Y0_M, RES_M = 1_000_000.0, 500_000.0, 6.0
TRANSFORM = Affine(RES_M, 0, X0_M, 0, -RES_M, Y0_M)


def _deg(m: float) -> float:
    return math.degrees(m / MARS_RADIUS_M)


def _record(scene: str, k: int, row: int, col: int) -> Detection:
    return Detection.locate(
        id=f"{scene}-{k:05d}",
        scene=scene,
        row_min=row - 4,
        col_min=col - 4,
        row_max=row + 4,
        col_max=col + 4,
        centroid_row=row,
        centroid_col=col,
        area_px=49,
        score=0.9,
        model_version="v7",
        transform=TRANSFORM,
    )


def _predicted(folder: Path, scene: str, records: list[Detection], form: str = "geojson") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if form == "geojson":
        collection = feature_collection(records, f"{scene}_detections", MARS_EQC.to_wkt())
        (folder / f"{scene}_detections.geojson").write_text(json.dumps(collection))
        return
    with (folder / f"{scene}_detections.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(r.properties() for r in records)
    profile = geotiff_profile(16, 16, "uint8", MARS_EQC, TRANSFORM, None)
    with rasterio.open(folder / f"{scene}_prob.tif", "w", **profile) as ds:  # where the CSV's CRS comes from
        ds.write(np.zeros((1, 16, 16), np.uint8))


def _catalog(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["-q", "catalog", *args])
    return result.exit_code, result.output


def test_a_detection_at_a_known_pixel_lands_at_its_known_lon_lat(tmp_path: Path) -> None:
    _predicted(tmp_path / "a", "S1", [_record("S1", 0, 100, 170), _record("S1", 1, 10, 20)])
    _predicted(tmp_path / "b", "S2", [_record("S2", 0, 300, 40)], form="csv")
    code, output = _catalog(str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "c.gpkg"))
    assert code == 0, output
    assert "3 detections from 2 files" in output
    meta, _, geometry, fields = pyogrio.raw.read(tmp_path / "c.gpkg")
    assert "Mars (2015)" in meta["crs"] and meta["geometry_type"] == "Polygon"
    rows = [dict(zip(meta["fields"], values, strict=True)) for values in zip(*fields, strict=True)]
    first = next(r for r in rows if r["id"] == "S1-00000")
    assert first["lon"] == pytest.approx(_deg(X0_M + 170.5 * RES_M), abs=1e-7)
    assert first["lat"] == pytest.approx(_deg(Y0_M - 100.5 * RES_M), abs=1e-7)
    assert (first["scene"], first["model_version"], first["score"]) == ("S1", "v7", pytest.approx(0.9))
    assert first["centroid_row"] == 100 and first["area_px"] == 49
    box = shapely.from_wkb(geometry[[r["id"] for r in rows].index("S1-00000")])
    west, _, east, north = box.bounds
    assert west == pytest.approx(_deg(X0_M + 166 * RES_M), abs=1e-7)
    assert north == pytest.approx(_deg(Y0_M - 96 * RES_M), abs=1e-7)
    assert east - west == pytest.approx(_deg(9 * RES_M), abs=1e-7)
    from_csv = next(r for r in rows if r["scene"] == "S2")
    assert from_csv["lon"] == pytest.approx(_deg(X0_M + 40.5 * RES_M), abs=1e-7)
    assert from_csv["source"].endswith("S2_detections.csv")


def test_geoparquet_holds_the_same_rows_with_geo_metadata(tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    _predicted(tmp_path / "a", "S1", [_record("S1", 0, 100, 170)])
    code, output = _catalog(str(tmp_path / "a"), "--out", str(tmp_path / "c.parquet"))
    assert code == 0, output
    table = pq.read_table(tmp_path / "c.parquet")
    geo = json.loads(table.schema.metadata[b"geo"])
    assert geo["primary_column"] == "geometry" and geo["columns"]["geometry"]["encoding"] == "WKB"
    assert geo["columns"]["geometry"]["crs"]["name"] == "Mars (2015) - Sphere / Ocentric"
    (row,) = table.to_pylist()
    assert row["lon"] == pytest.approx(_deg(X0_M + 170.5 * RES_M), abs=1e-7)
    assert shapely.from_wkb(row["geometry"]).contains(shapely.Point(row["lon"], row["lat"]))


def test_bad_files_are_named_the_others_are_catalogued_and_the_exit_is_non_zero(tmp_path: Path) -> None:
    _predicted(tmp_path / "a", "S1", [_record("S1", 0, 100, 170)])
    (tmp_path / "a" / "S2_detections.geojson").write_text('{"type": "FeatureColl')
    _predicted(tmp_path / "a", "S3", [_record("S3", 0, 5, 5)], form="csv")
    (tmp_path / "a" / "S3_prob.tif").unlink()  # a CSV whose CRS cannot be found
    code, output = _catalog(str(tmp_path / "a"), str(tmp_path / "missing"), "--out", str(tmp_path / "c.gpkg"))
    assert code == 1 and "Traceback" not in output
    assert "S2_detections.geojson: cannot be read" in output
    assert "S3_detections.csv" in output and "no CRS" in output
    assert f"{tmp_path / 'missing'}: no such folder" in output
    meta, _, _, fields = pyogrio.raw.read(tmp_path / "c.gpkg")
    assert list(fields[meta["fields"].tolist().index("id")]) == ["S1-00000"]
    assert not [p for p in tmp_path.iterdir() if "partial" in p.name]


def test_an_unknown_extension_is_refused(tmp_path: Path) -> None:
    _predicted(tmp_path / "a", "S1", [_record("S1", 0, 100, 170)])
    code, output = _catalog(str(tmp_path / "a"), "--out", str(tmp_path / "c.shp"))
    assert code == 1 and ".gpkg" in output and not (tmp_path / "c.shp").exists()
