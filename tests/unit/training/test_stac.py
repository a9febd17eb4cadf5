"""STAC Items and the Collection of predicted scenes: valid STAC, on Mars, relative assets."""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import pytest
from pystac.errors import STACValidationError
from rasterio.transform import Affine

from tiling.crs import MARS_EQC, MARS_RADIUS_M
from training.stac import COLLECTION_FILE, scene_item, write_collection, write_item

from ...stac_schemas import validate_offline

RES_M = 6.0


def _outputs(out: Path, name: str) -> dict[str, Path]:
    return {
        "prob": out / f"{name}_prob.tif",
        "geojson": out / f"{name}_detections.geojson",
        "csv": out / f"{name}_detections.csv",
        "stac": out / f"{name}_stac.json",
    }


def _item(out: Path, name: str, x0_m: float, when: dt.datetime) -> Path:
    item = scene_item(
        name=name,
        image=out.parent / "scenes" / f"{name}.tif",
        outputs=_outputs(out, name),
        height=1000,
        width=500,
        transform=Affine(RES_M, 0, x0_m, 0, -RES_M, 60_000.0),
        crs=MARS_EQC,
        model_version="v7",
        detections=3,
        when=when,
    )
    return write_item(item, out / f"{name}_stac.json")


def test_an_item_is_valid_stac_with_its_grid_and_mars_lon_lat(tmp_path: Path) -> None:
    out = tmp_path / "pred"
    out.mkdir()
    path = _item(out, "S1", 0.0, dt.datetime(2026, 1, 2, tzinfo=dt.UTC))
    data = json.loads(path.read_text())
    schemas = validate_offline(data)
    assert any("projection/v2.0.0" in s for s in schemas) and any("ssys/v1.1.0" in s for s in schemas)
    props = data["properties"]
    assert props["ssys:targets"] == ["Mars"] and props["proj:code"] == "IAU_2015:49910"
    assert props["proj:shape"] == [1000, 500] and props["proj:transform"] == [6, 0, 0, 0, -6, 60_000]
    assert "Mars (2015)" in props["proj:wkt2"]
    deg_per_m = math.degrees(1 / MARS_RADIUS_M)
    west, south, east, north = data["bbox"]
    assert (west, east) == pytest.approx((0.0, 500 * RES_M * deg_per_m))
    assert (south, north) == pytest.approx(((60_000 - 1000 * RES_M) * deg_per_m, 60_000 * deg_per_m))
    assert data["assets"]["probability"]["href"] == "./S1_prob.tif"
    assert data["assets"]["probability"]["type"].startswith("image/tiff; application=geotiff; profile=cloud")
    assert data["assets"]["scene"]["href"] == "../scenes/S1.tif"
    assert data["assets"]["detections"]["href"] == "./S1_detections.geojson"


def test_the_collection_spans_every_item_of_the_folder_and_is_valid(tmp_path: Path) -> None:
    out = tmp_path / "pred"
    out.mkdir()
    _item(out, "S1", 0.0, dt.datetime(2026, 1, 2, tzinfo=dt.UTC))
    _item(out, "S2", 600_000.0, dt.datetime(2026, 1, 5, tzinfo=dt.UTC))
    (out / "S3_stac.json").write_text('{"type": "Feat')  # a killed write: skipped
    path = write_collection(out)
    assert path == out / COLLECTION_FILE
    data = json.loads(path.read_text())
    validate_offline(data)
    assert data["ssys:targets"] == ["Mars"]
    assert [link["href"] for link in data["links"] if link["rel"] == "item"] == [
        "./S1_stac.json",
        "./S2_stac.json",
    ]
    (bbox,) = data["extent"]["spatial"]["bbox"]
    assert bbox[2] == pytest.approx(math.degrees((600_000 + 3000) / MARS_RADIUS_M))
    assert data["extent"]["temporal"]["interval"] == [["2026-01-02T00:00:00Z", "2026-01-05T00:00:00Z"]]
    for item in ("S1", "S2"):
        assert json.loads((out / f"{item}_stac.json").read_text())["collection"] == data["id"]


def test_the_offline_validation_catches_a_broken_item(tmp_path: Path) -> None:
    out = tmp_path / "pred"
    out.mkdir()
    data = json.loads(_item(out, "S1", 0.0, dt.datetime(2026, 1, 2, tzinfo=dt.UTC)).read_text())
    data["properties"]["proj:shape"] = [1000]
    with pytest.raises(STACValidationError):
        validate_offline(data)
    del data["properties"]["datetime"]
    data["properties"]["proj:shape"] = [1000, 500]
    with pytest.raises(STACValidationError):
        validate_offline(data)
