"""Export: accepted GeoJSON in the scene CRS and CSV, hard negatives CSV, conflicts left out."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

from service.review.export import HARD_NEGATIVE_COLUMNS, export_reviews, render
from service.review.schemas import DetectionIn, QueueFilter
from service.review.store import ReviewStore

Make = Callable[..., DetectionIn]
CONTRACT_COLUMNS = (
    "detection_id,scene,row_min,col_min,row_max,col_max,score,model_version,reason,analyst,decided_at"
)


def _review(store: ReviewStore, detections: Make) -> dict[str, int]:
    store.add_detections([detections(k) for k in range(6)])
    ids = {d.key[:8]: d.id for d in store.queue(QueueFilter(status=None, limit=200)).items}
    store.decide(ids["S1-00000"], "alice", "accept", None, "fresh ejecta")
    store.decide(ids["S1-00000"], "bob", "accept", None, None)
    store.decide(ids["S1-00001"], "alice", "accept", None, None)
    store.decide(ids["S1-00002"], "alice", "reject", "crater", None)
    store.decide(ids["S1-00003"], "bob", "reject", "shadow", "long shadow")
    store.decide(ids["S1-00004"], "alice", "accept", None, None)
    store.decide(ids["S1-00004"], "bob", "reject", "artefact", None)  # conflict: in neither list
    return ids


def test_export_writes_the_three_files(store: ReviewStore, detections: Make, tmp_path: Path) -> None:
    ids = _review(store, detections)
    summary = export_reviews(store, tmp_path / "out")
    assert (summary.accepted, summary.rejected, summary.conflict, summary.unsure, summary.pending) == (
        2,
        2,
        1,
        0,
        1,
    )
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["accepted.csv", "accepted.geojson", "hard_negatives.csv"], "no .partial file is left"

    collection = json.loads((tmp_path / "out" / "accepted.geojson").read_text())
    assert collection["type"] == "FeatureCollection"
    assert collection["crs"] == {"type": "name", "properties": {"name": 'LOCAL_CS["test"]'}}
    features = {f["id"]: f for f in collection["features"]}
    assert set(features) == {"S1-00000", "S1-00001"}
    first = features["S1-00000"]
    props = first["properties"]
    assert props["detection_id"] == ids["S1-00000"]
    assert props["analyst"] == "alice;bob"
    assert props["decided_at"].endswith("+00:00")
    # transform (6, 0, 1000, 0, -6, -2000): box rows 10..19, cols 20..27 -> pixel edges in map units
    assert (props["x_min"], props["x_max"], props["y_min"], props["y_max"]) == (
        1120.0,
        1168.0,
        -2120.0,
        -2060.0,
    )
    assert first["geometry"]["coordinates"][0][0] == [1120.0, -2120.0]
    assert props["area_m2"] == 60 * 36.0

    with (tmp_path / "out" / "accepted.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["id"] for r in rows] == ["S1-00000", "S1-00001"]
    assert rows[0]["analyst"] == "alice;bob"

    lines = (tmp_path / "out" / "hard_negatives.csv").read_text().splitlines()
    assert lines[0] == CONTRACT_COLUMNS == ",".join(HARD_NEGATIVE_COLUMNS)
    negatives = list(csv.DictReader(lines))
    assert [(int(r["detection_id"]), r["reason"], r["analyst"]) for r in negatives] == [
        (ids["S1-00002"], "crater", "alice"),
        (ids["S1-00003"], "shadow", "bob"),
    ]
    assert (negatives[0]["row_min"], negatives[0]["col_max"], negatives[0]["model_version"]) == (
        "12",
        "29",
        "v1",
    )


def test_render_matches_the_files(store: ReviewStore, detections: Make, tmp_path: Path) -> None:
    _review(store, detections)
    export_reviews(store, tmp_path)
    assert render(store, "accepted", "geojson") == (tmp_path / "accepted.geojson").read_text()
    assert render(store, "accepted", "csv") == (tmp_path / "accepted.csv").read_text()
    assert render(store, "rejected", "csv") == (tmp_path / "hard_negatives.csv").read_text()
    rejected = json.loads(render(store, "rejected", "geojson"))
    assert [f["properties"]["reason"] for f in rejected["features"]] == ["crater", "shadow"]


def test_scenes_in_different_crs_keep_their_own(store: ReviewStore, detections: Make, tmp_path: Path) -> None:
    other = detections(0, "S2").model_copy(update={"crs_wkt": 'LOCAL_CS["other"]'})
    store.add_detections([detections(0, "S1"), other])
    for d in store.queue(QueueFilter()).items:
        store.decide(d.id, "alice", "accept", None, None)
    export_reviews(store, tmp_path)
    collection = json.loads((tmp_path / "accepted.geojson").read_text())
    assert collection["crs"]["properties"]["name"] is None
    assert {f["properties"]["scene"]: f["properties"]["crs_wkt"] for f in collection["features"]} == {
        "S1": 'LOCAL_CS["test"]',
        "S2": 'LOCAL_CS["other"]',
    }


def test_empty_store_exports_empty_files(store: ReviewStore, tmp_path: Path) -> None:
    summary = export_reviews(store, tmp_path)
    assert (summary.accepted, summary.rejected) == (0, 0)
    assert json.loads((tmp_path / "accepted.geojson").read_text())["features"] == []
    assert (tmp_path / "hard_negatives.csv").read_text() == CONTRACT_COLUMNS + "\n"
