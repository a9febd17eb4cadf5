"""Label catalogs on a small Mars grid: every form gives the same discs, windows equal the
whole grid, bad files fail in one line, and a big catalog stays local and small."""

from __future__ import annotations

import json
import math
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import shapely
from pyogrio.raw import write as write_vector
from rasterio.crs import CRS
from rasterio.features import rasterize
from rasterio.transform import Affine

from impacts.errors import GridMismatchError, SceneError
from tiling.crs import MARS_EQC, MARS_LONLAT, MARS_RADIUS_M, to_lonlat
from tiling.io import read_window
from tiling.labels import FOOTPRINT_RADII, LabelMask, open_labels

H, W, RES_M = 300, 200, 6.0
X0, Y0 = MARS_RADIUS_M * math.radians(10.0), MARS_RADIUS_M * math.radians(5.0)
TRANSFORM = Affine(RES_M, 0, X0, 0, -RES_M, Y0)
#: (row, col, footprint radius px): overlapping discs, one cut by the left edge, one off the
#: top edge with its disc inside.
POINTS = [(40.3, 50.7, 12.0), (48.0, 60.0, 6.5), (150.5, 2.0, 9.0), (-3.0, 120.0, 8.0), (270.0, 180.2, 3.0)]


def _map_xy(row: float, col: float) -> tuple[float, float]:
    return TRANSFORM @ (col, row)


def _diameter_m(radius_px: float) -> float:
    return 2 * radius_px * RES_M / FOOTPRINT_RADII


def _expected_discs() -> np.ndarray:
    rr, cc = np.mgrid[:H, :W] + 0.5
    out = np.zeros((H, W), np.uint8)
    for row, col, radius in POINTS:
        out[(rr - row) ** 2 + (cc - col) ** 2 <= radius**2] = 1
    return out


def _csv(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def _geojson(path: Path, features: list[dict[str, Any]], crs: str | None = None) -> Path:
    doc: dict[str, object] = {"type": "FeatureCollection", "features": features}
    if crs:
        doc["crs"] = {"type": "name", "properties": {"name": crs}}
    path.write_text(json.dumps(doc))
    return path


def _gpkg(
    path: Path, geoms: list[shapely.Geometry], diameters: list[float] | None, crs: CRS | str | None
) -> Path:
    kind = "Point" if geoms[0].geom_type == "Point" else "Polygon"
    fields = [np.array(diameters, dtype=np.float64)] if diameters is not None else []
    write_vector(
        path,
        geometry=np.array([shapely.to_wkb(g) for g in geoms], dtype=object),
        field_data=fields,
        fields=["diameter_m"] if diameters is not None else [],
        geometry_type=kind,
        crs=crs.to_wkt() if isinstance(crs, CRS) else crs,
        driver="GPKG",
    )
    return path


def _lonlat() -> tuple[list[float], list[float]]:
    xy = [_map_xy(r, c) for r, c, _ in POINTS]
    return to_lonlat(MARS_EQC, [x for x, _ in xy], [y for _, y in xy])


def _csv_xy(tmp: Path) -> Path:
    rows = [
        f"{x!r},{y!r},{_diameter_m(r)!r}"
        for (x, y), (*_, r) in zip(map(lambda p: _map_xy(*p[:2]), POINTS), POINTS, strict=True)
    ]
    return _csv(
        tmp / "S_labels.csv", "id,x,y,diameter_m,note", [f"{k},{row},n" for k, row in enumerate(rows)]
    )


def _csv_lonlat(tmp: Path) -> Path:
    lons, lats = _lonlat()
    rows = [f"{lon!r},{lat!r},{_diameter_m(p[2])!r}" for lon, lat, p in zip(lons, lats, POINTS, strict=True)]
    return _csv(tmp / "S_labels.csv", "LON, Lat ,diameter_m", rows)


def _geojson_lonlat(tmp: Path) -> Path:
    lons, lats = _lonlat()
    features = [
        {
            "type": "Feature",
            "properties": {"diameter_m": _diameter_m(p[2])},
            "geometry": {"type": "Point", "coordinates": [lon, lat]},
        }
        for lon, lat, p in zip(lons, lats, POINTS, strict=True)
    ]
    return _geojson(tmp / "S_labels.geojson", features)


def _gpkg_scene_crs(tmp: Path) -> Path:
    points = [shapely.Point(_map_xy(r, c)) for r, c, _ in POINTS]
    return _gpkg(tmp / "S_labels.gpkg", points, [_diameter_m(p[2]) for p in POINTS], MARS_EQC)


def _gpkg_mars_lonlat(tmp: Path) -> Path:
    points = [shapely.Point(lon, lat) for lon, lat in zip(*_lonlat(), strict=True)]
    return _gpkg(tmp / "S_labels.gpkg", points, [_diameter_m(p[2]) for p in POINTS], MARS_LONLAT)


def _gpkg_no_crs(tmp: Path) -> Path:  # no CRS on a Mars scene: lon/lat on the Mars sphere
    points = [shapely.Point(lon, lat) for lon, lat in zip(*_lonlat(), strict=True)]
    with pytest.warns(UserWarning, match="crs"):
        return _gpkg(tmp / "S_labels.gpkg", points, [_diameter_m(p[2]) for p in POINTS], None)


def _open(path: Path) -> LabelMask:
    return open_labels(path, H, W, TRANSFORM, MARS_EQC)


@pytest.mark.parametrize(
    "write", [_csv_xy, _csv_lonlat, _geojson_lonlat, _gpkg_scene_crs, _gpkg_mars_lonlat, _gpkg_no_crs]
)
def test_every_form_of_a_point_catalog_gives_the_discs_of_the_whole_grid(
    write: Callable[[Path], Path], tmp_path: Path
) -> None:
    labels = _open(write(tmp_path))
    expected = _expected_discs()
    assert np.array_equal(labels.mask_window(0, 0, H, W), expected)
    for row, col, height, width in [(0, 0, 64, 64), (30, 40, 37, 51), (140, 0, 20, 10), (256, 128, 44, 72)]:
        window = expected[row : row + height, col : col + width]
        assert np.array_equal(labels.mask_window(row, col, height, width), window)
        assert np.array_equal(read_window(labels, row, col, height, width), window), "read as a mask dataset"
    impacts = labels.known_impacts()
    assert [(o.kind, round(o.row, 6), round(o.col, 6), round(o.radius_px, 6)) for o in impacts] == [
        ("impact", r, c, rad) for r, c, rad in POINTS
    ]


def test_a_footprint_is_a_configurable_multiple_of_the_crater(tmp_path: Path) -> None:
    path = _csv(tmp_path / "S_labels.csv", "x,y,diameter_m", ["{!r},{!r},6".format(*_map_xy(100, 100))])
    assert _open(path).radii.tolist() == [FOOTPRINT_RADII * 3 / RES_M]
    twice = open_labels(path, H, W, TRANSFORM, MARS_EQC, footprint_radii=2 * FOOTPRINT_RADII)
    assert twice.known_impacts()[0].radius_px == pytest.approx(2 * FOOTPRINT_RADII * 3 / RES_M)


def test_polygons_are_burnt_as_on_the_whole_grid_and_overlapping_ones_are_one_impact(tmp_path: Path) -> None:
    in_px = [
        shapely.box(10.7, 10.2, 40.7, 40.2),
        shapely.box(30, 30, 50, 50),
        shapely.box(100, 200, 112.3, 212.3),
    ]
    in_px.append(shapely.Point(150, 100).buffer(10))
    polygons = list(shapely.transform(in_px, lambda cr: np.column_stack(TRANSFORM @ (cr[:, 0], cr[:, 1]))))
    labels = _open(_gpkg(tmp_path / "S_labels.gpkg", polygons, None, MARS_EQC))
    expected = rasterize(((p, 1) for p in polygons), out_shape=(H, W), transform=TRANSFORM)
    assert expected.any()
    for row, col, height, width in [(0, 0, H, W), (0, 0, 64, 64), (25, 25, 30, 7), (90, 140, 33, 20)]:
        assert np.array_equal(
            labels.mask_window(row, col, height, width), expected[row : row + height, col : col + width]
        )
    impacts = sorted(labels.known_impacts(), key=lambda o: o.row)
    assert len(impacts) == 3, "the two overlapping squares are one impact"
    union = shapely.union_all(in_px[:2])
    first = impacts[0]
    assert (first.row, first.col, first.radius_px) == pytest.approx(
        (union.centroid.y, union.centroid.x, 19.9)
    )
    assert (impacts[1].row, impacts[1].col, impacts[1].radius_px) == pytest.approx((100, 150, 10), abs=0.1)


def _feature(geometry: object, **properties: object) -> dict[str, object]:
    return {"type": "Feature", "properties": properties, "geometry": geometry}


_LONS, _LATS = to_lonlat(MARS_EQC, [_map_xy(50, 50)[0]], [_map_xy(50, 50)[1]])
POINT_IN = {"type": "Point", "coordinates": [_LONS[0], _LATS[0]]}
XY_IN = "{!r},{!r}".format(*_map_xy(50, 50))
XY_OUT = "{!r},{!r}".format(*_map_xy(50, 400))

#: (file name, how to write it, error type, what the one line says: row and fix)
BAD: list[tuple[str, Callable[[Path], object], type[Exception], list[str]]] = [
    ("S_labels.csv", lambda p: p.write_text("x,y,size\n1,2,3\n"), SceneError, ["line 1", "x,y,diameter_m"]),
    (
        "S_labels.csv",
        lambda p: p.write_text(f"x,y,diameter_m\n{XY_IN},4\n{XY_IN},four\n"),
        SceneError,
        ["line 3", "not three numbers", "fix or delete"],
    ),
    ("S_labels.csv", lambda p: p.write_text(f"x,y,diameter_m\n{XY_IN},4\n{XY_IN}\n"), SceneError, ["line 3"]),
    (
        "S_labels.csv",
        lambda p: p.write_text(f"x,y,diameter_m\n{XY_IN},4\n{XY_IN},0\n{XY_IN},-2\n"),
        SceneError,
        ["line 3", "positive", "2 such row"],
    ),
    (
        "S_labels.csv",
        lambda p: p.write_text(f"x,y,diameter_m\n{XY_IN},4\n{XY_OUT},4\n"),
        SceneError,
        ["line 3", "outside the scene's 300x200 px grid", "clip the catalog"],
    ),
    (
        "S_labels.csv",
        lambda p: p.write_text("lon,lat,diameter_m\n10,95,4\n"),
        SceneError,
        ["line 2", "lat -90..90"],
    ),
    (
        "S_labels.geojson",
        lambda p: _geojson(
            p,
            [
                _feature(POINT_IN, diameter_m=5),
                _feature({"type": "LineString", "coordinates": [[0, 0], [1, 1]]}, diameter_m=5),
            ],
        ),
        SceneError,
        ["feature 2", "LineString", "points with diameter_m or polygons"],
    ),
    (
        "S_labels.geojson",
        lambda p: _geojson(p, [_feature(POINT_IN, diameter_m=5), _feature(None, diameter_m=5)]),
        SceneError,
        ["feature 2", "no geometry"],
    ),
    (
        "S_labels.geojson",
        lambda p: _geojson(p, [_feature(POINT_IN, name="a")]),
        SceneError,
        ["feature 1", "need a diameter_m property", "add it"],
    ),
    (
        "S_labels.geojson",
        lambda p: _geojson(p, [_feature(POINT_IN, diameter_m=5), _feature(POINT_IN, diameter_m="big")]),
        SceneError,
        ["feature 2", "'big' is not a number"],
    ),
    (
        "S_labels.geojson",
        lambda p: p.write_text("{not json"),
        SceneError,
        ["cannot be read as a vector file", "re-export"],
    ),
    (
        "S_labels.gpkg",
        lambda p: _gpkg(p, [shapely.Point(_map_xy(50, 50))] * 3, [5.0, 5.0, -1.0], MARS_EQC),
        SceneError,
        ["fid 3", "-1 is not a positive"],
    ),
    (
        "S_labels.gpkg",
        lambda p: _gpkg(p, [shapely.Point(500_000, 4_000_000)], [5.0], "EPSG:32633"),
        GridMismatchError,
        ["CRS EPSG:32633", "body of 6378 km", "reproject"],
    ),
]


@pytest.mark.parametrize(
    ("name", "write", "error", "says"), BAD, ids=[f"{b[0]}-{k}" for k, b in enumerate(BAD)]
)
def test_a_bad_catalog_fails_in_one_line_naming_the_file_the_row_and_the_fix(
    name: str, write: Callable[[Path], object], error: type[Exception], says: list[str], tmp_path: Path
) -> None:
    path = tmp_path / name
    write(path)
    with pytest.raises(error) as caught:
        _open(path)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(str(path))
    for part in says:
        assert part in message


def test_lon_lat_need_a_georeferenced_scene(tmp_path: Path) -> None:
    path = _csv(tmp_path / "S_labels.csv", "lon,lat,diameter_m", ["10,5,4"])
    with pytest.raises(GridMismatchError, match="scene has no CRS; give x,y"):
        open_labels(path, H, W, Affine.identity(), None)
    grid = _csv(tmp_path / "T_labels.csv", "x,y,diameter_m", ["20.5,30.5,4"])  # no CRS: grid coordinates
    assert open_labels(grid, H, W, Affine.identity(), None).mask_window(30, 20, 1, 1).tolist() == [[1]]


def test_a_label_mask_reads_windows_only(tmp_path: Path) -> None:
    labels = _open(_csv_xy(tmp_path))
    with pytest.raises(ValueError, match="window"):
        labels.read(1)
    out = np.full((10, 10), 7, np.uint8)
    assert read_window(labels, 35, 45, 10, 10, out=out) is out and set(np.unique(out)) <= {0, 1}


def test_a_100000_point_catalog_draws_a_window_from_nearby_labels_in_little_memory(tmp_path: Path) -> None:
    height, width, n = 20_000, 12_000, 100_000
    rng = np.random.default_rng(5)
    rows, cols = rng.uniform(0, height, n), rng.uniform(0, width, n)
    diameters = rng.uniform(1, 12, n)  # footprints of 2.5-30 px radius at 1 m/px
    transform = Affine(1.0, 0, 0, 0, -1.0, float(height))
    lines = [f"{c:.3f},{height - r:.3f},{d:.3f}" for r, c, d in zip(rows, cols, diameters, strict=True)]
    labels = open_labels(
        _csv(tmp_path / "Big_labels.csv", "x,y,diameter_m", lines), height, width, transform, None
    )
    row, col, size = 9_000, 6_000, 128
    touching = labels.candidates(row, col, size, size)
    rows, cols, radii = labels.rows, labels.cols, labels.radii  # as read (the CSV rounds)
    brute = np.flatnonzero(
        (cols + radii > col)
        & (cols - radii < col + size)
        & (rows + radii > row)
        & (rows - radii < row + size)
    )
    assert np.array_equal(np.sort(touching), brute), "the index finds exactly the labels whose box touches"
    assert 0 < len(touching) < 50
    tracemalloc.start()
    mask = labels.mask_window(row, col, size, size)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert mask.any() and peak < 256 * 1024, f"a window allocated {peak} bytes"
    rr, cc = np.mgrid[row : row + size, col : col + size] + 0.5
    expected = np.zeros((size, size), bool)
    for k in brute:
        expected |= (rr - rows[k]) ** 2 + (cc - cols[k]) ** 2 <= radii[k] ** 2
    assert np.array_equal(mask, expected)
