"""The detection record: map coordinates from the grid, and round trips through its forms."""

from __future__ import annotations

import csv
import io
import json

import pytest
from rasterio.transform import Affine

from impacts.detections import CSV_COLUMNS, Detection, feature_collection
from impacts.errors import DetectionImportError

TRANSFORM = Affine(6.0, 0.0, 1_000_000.0, 0.0, -6.0, 500_000.0)


def _record(**changes: object) -> Detection:
    fields: dict[str, object] = {
        "id": "S-00003",
        "scene": "S",
        "row_min": 92,
        "col_min": 162,
        "row_max": 108,
        "col_max": 178,
        "centroid_row": 100.0,
        "centroid_col": 170.0,
        "area_px": 197,
        "score": 0.912345,
        "model_version": "v7",
        "transform": TRANSFORM,
    }
    fields.update(changes)
    return Detection.locate(**fields)  # type: ignore[arg-type]


def test_map_fields_come_from_pixel_centres_and_edges() -> None:
    d = _record()
    assert (d.centroid_x, d.centroid_y) == (1_000_000 + 170.5 * 6, 500_000 - 100.5 * 6)
    assert (d.x_min, d.x_max) == (1_000_000 + 162 * 6, 1_000_000 + 179 * 6)
    assert (d.y_min, d.y_max) == (500_000 - 109 * 6, 500_000 - 92 * 6)
    assert d.area_m2 == 197 * 36 and d.score == 0.9123
    plain = _record(transform=None, scene=None)
    assert None is plain.centroid_x is plain.x_min is plain.area_m2 and plain.feature()["geometry"] is None


def test_the_record_survives_csv_and_geojson() -> None:
    records = [_record(), _record(id="S-00004", row_min=5, row_max=5, col_min=7, col_max=9, score=0.5)]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, CSV_COLUMNS)
    writer.writeheader()
    writer.writerows(r.properties() for r in records)
    rows = list(csv.DictReader(io.StringIO(buffer.getvalue())))  # every value a string now
    assert [Detection.from_properties(row) for row in rows] == records
    collection = json.loads(json.dumps(feature_collection(records, "S_detections", "WKT")))
    assert collection["crs"]["properties"]["name"] == "WKT"
    back = [Detection.from_properties(f["properties"]) for f in collection["features"]]
    assert back == records
    ring = collection["features"][0]["geometry"]["coordinates"][0]
    assert ring[0] == [records[0].x_min, records[0].y_min] and ring[0] == ring[-1]


def test_extra_properties_travel_beside_the_record() -> None:
    record = _record()
    flat = {"detection_id": 12, **record.properties(), "analyst": "ada"}
    again, extra = Detection.split(flat)
    assert again == record and extra == {"detection_id": 12, "analyst": "ada"}
    assert record.feature(extra)["properties"]["analyst"] == "ada"


def test_a_broken_record_is_one_error_naming_the_field() -> None:
    properties = _record().properties()
    del properties["score"]
    with pytest.raises(DetectionImportError, match=r"f.geojson: feature 2 \(score: Field required\)"):
        Detection.from_properties(properties, "f.geojson: feature 2")
    with pytest.raises(DetectionImportError, match="box is empty"):
        Detection.from_properties({**_record().properties(), "row_min": 200})
