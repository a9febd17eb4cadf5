"""Mars CRSs: named by their IAU code everywhere, and the conversion to lon/lat on Mars."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS
from rasterio.transform import Affine

from impacts.errors import SceneError
from tiling.crs import _WKT2, MARS_EQC, MARS_LONLAT, MARS_RADIUS_M, crs_code, to_lonlat
from tiling.io import geotiff_profile


def test_synthetic_scenes_carry_the_iau_code_that_gdal_and_qgis_name(tmp_path: Path) -> None:
    path = tmp_path / "s.tif"
    with rasterio.open(
        path, "w", **geotiff_profile(16, 16, "uint8", MARS_EQC, Affine(6, 0, 0, 0, -6, 0), 0)
    ) as ds:
        ds.write(np.ones((1, 16, 16), np.uint8))
    with rasterio.open(path) as ds:
        assert crs_code(ds.crs) == "IAU_2015:49910"
        assert "Mars (2015)" in ds.crs.to_wkt()
    assert crs_code(MARS_LONLAT) == "IAU_2015:49900" and MARS_LONLAT.is_geographic


def test_the_wkt_fallback_is_the_same_crs_with_its_identifier() -> None:
    for code, wkt in _WKT2.items():
        crs = CRS.from_wkt(wkt)
        assert crs == CRS.from_string(code) and crs_code(crs) == code


def test_equirectangular_metres_become_degrees_on_the_mars_sphere() -> None:
    x_m, y_m = 1_000_000.0, -500_000.0
    lons, lats = to_lonlat(MARS_EQC, [x_m, 0.0], [y_m, 0.0])
    assert lons[0] == pytest.approx(math.degrees(x_m / MARS_RADIUS_M), abs=1e-9)
    assert lats[0] == pytest.approx(math.degrees(y_m / MARS_RADIUS_M), abs=1e-9)
    assert (lons[1], lats[1]) == pytest.approx((0.0, 0.0))


def test_longitudes_east_of_180_wrap_to_negative() -> None:
    x_m = math.radians(190.0) * MARS_RADIUS_M
    (lon,), _ = to_lonlat(MARS_EQC, [x_m], [0.0])
    assert lon == pytest.approx(-170.0)


def test_an_earth_crs_or_none_is_refused_with_a_way_out() -> None:
    with pytest.raises(SceneError, match="Mars CRS"):
        to_lonlat("EPSG:32633", [500_000.0], [0.0])
    with pytest.raises(SceneError, match="gdal_edit"):
        to_lonlat(None, [0.0], [0.0])
