"""Export reviews: accepted impacts (GeoJSON in the scene CRS, CSV) and hard negatives.

``export_reviews(store, DIR)`` writes, each atomically (:mod:`impacts.atomic`):

- ``accepted.geojson``: a FeatureCollection like ``impacts predict`` writes (box polygons in
  map coordinates, ``crs`` named by WKT), one feature per accepted detection, with the
  predict properties plus ``detection_id``, ``analyst`` and ``decided_at``. When the
  accepted detections come from scenes in different CRSs the collection's ``crs`` is null
  and every feature carries its own ``crs_wkt``.
- ``accepted.csv``: the same properties, one row per detection (:data:`ACCEPTED_COLUMNS`).
- ``hard_negatives.csv``: rejected detections for ``impacts tile add-reviewed``
  (:data:`HARD_NEGATIVE_COLUMNS`, inclusive pixel box in scene pixels).

Detections in conflict (analysts disagree), unsure or pending are in neither list; the
summary counts them. ``render(store, what, fmt)`` gives one file's text for the HTTP API.
Map coordinates are those of pixel edges, as in predict: ``x = a*col + b*row + c``,
``y = d*col + e*row + f`` with the affine ``(a, b, c, d, e, f)`` of the scene.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from impacts.atomic import write_text_atomic
from impacts.detections import CSV_COLUMNS, Detection
from service.review.schemas import DecisionOut, DetectionOut
from service.review.store import ReviewStore
from tiling.reviewed import OPTIONAL_COLUMNS, REQUIRED_COLUMNS

log = logging.getLogger(__name__)

# The columns of `impacts predict`'s CSV, with the decision; rejections in the columns
# `impacts tile add-reviewed` reads.
ACCEPTED_COLUMNS = ["detection_id", *CSV_COLUMNS, "analyst", "decided_at"]
HARD_NEGATIVE_COLUMNS = [*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS]
FILES = {
    ("accepted", "geojson"): "accepted.geojson",
    ("accepted", "csv"): "accepted.csv",
    ("rejected", "csv"): "hard_negatives.csv",
    ("rejected", "geojson"): "rejected.geojson",
}


@dataclass
class ExportSummary:
    """What an export wrote and what it left out (detections in conflict, unsure, pending)."""

    accepted: int
    rejected: int
    conflict: int
    unsure: int
    pending: int
    files: list[Path] = field(default_factory=list)


def detection_record(d: DetectionOut, decision: DecisionOut | None = None) -> dict[str, Any]:
    """The predict-style properties of a reviewed detection, plus who decided and when.

    Args:
        d: The detection; its live decisions give ``analyst`` (``;``-joined) and
            ``decided_at`` (the latest) unless ``decision`` is given.
        decision: One decision to report instead (with its ``reason``).

    Returns:
        A flat dict with every :data:`ACCEPTED_COLUMNS` key (and ``reason`` with a decision).
    """
    located = Detection.locate(
        id=d.key.rsplit("@", 1)[0],
        scene=d.scene,
        row_min=d.row_min,
        col_min=d.col_min,
        row_max=d.row_max,
        col_max=d.col_max,
        centroid_row=d.centroid_row,
        centroid_col=d.centroid_col,
        area_px=d.area_px,
        score=d.score,
        model_version=d.model_version,
        transform=d.transform,
    )
    record: dict[str, Any] = {"detection_id": d.id, **located.properties()}
    if decision is not None:
        record.update(analyst=decision.analyst, decided_at=decision.at.isoformat(), reason=decision.reason)
    else:
        record.update(
            analyst=";".join(sorted({x.analyst for x in d.decisions})),
            decided_at=max((x.at for x in d.decisions), default=d.created_at).isoformat(),
        )
    return record


def _feature(record: dict[str, Any]) -> dict[str, Any]:
    detection, extra = Detection.split(record)
    return detection.feature(extra)


def _geojson(name: str, items: Iterable[tuple[dict[str, Any], str | None]]) -> str:
    pairs = list(items)
    crss = {wkt for _, wkt in pairs}
    mixed = len(crss) > 1
    if mixed:
        log.warning("%s: detections from %d CRSs; each feature carries its crs_wkt", name, len(crss))
    features = [_feature({**record, "crs_wkt": wkt} if mixed else record) for record, wkt in pairs]
    crs = None if mixed or not pairs else next(iter(crss))
    collection = {
        "type": "FeatureCollection",
        "name": name,
        "crs": {"type": "name", "properties": {"name": crs}},
        "features": features,
    }
    return json.dumps(collection, indent=1) + "\n"


def _csv(columns: list[str], rows: Iterable[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def render(store: ReviewStore, what: Literal["accepted", "rejected"], fmt: Literal["geojson", "csv"]) -> str:
    """The text of one export file.

    Args:
        store: The review store.
        what: ``accepted`` impacts or ``rejected`` detections (hard negatives).
        fmt: ``geojson`` or ``csv`` (rejected as CSV is ``hard_negatives.csv``).

    Returns:
        The file's content.
    """
    if what == "accepted":
        accepted = ((detection_record(d), d.crs_wkt) for d in store.accepted())
        if fmt == "geojson":
            return _geojson("accepted", accepted)
        return _csv(ACCEPTED_COLUMNS, (r for r, _ in accepted))
    rejected = ((detection_record(d, decision), d.crs_wkt) for d, decision in store.rejected())
    if fmt == "geojson":
        return _geojson("rejected", rejected)
    return _csv(HARD_NEGATIVE_COLUMNS, (r for r, _ in rejected))


def export_reviews(store: ReviewStore, out_dir: Path) -> ExportSummary:
    """Write ``accepted.geojson``, ``accepted.csv`` and ``hard_negatives.csv`` to ``out_dir``.

    Args:
        store: The review store.
        out_dir: Output folder (created when missing).

    Returns:
        Counts of exported and left-out detections, and the files written.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    progress = store.progress()
    summary = ExportSummary(
        accepted=0,
        rejected=0,
        conflict=sum(p.conflict for p in progress),
        unsure=sum(p.unsure for p in progress),
        pending=sum(p.pending for p in progress),
    )
    accepted = [(detection_record(d), d.crs_wkt) for d in store.accepted()]
    rejected = [detection_record(d, decision) for d, decision in store.rejected()]
    summary.accepted, summary.rejected = len(accepted), len(rejected)
    summary.files = [
        write_text_atomic(out_dir / FILES["accepted", "geojson"], _geojson("accepted", accepted)),
        write_text_atomic(
            out_dir / FILES["accepted", "csv"], _csv(ACCEPTED_COLUMNS, (r for r, _ in accepted))
        ),
        write_text_atomic(out_dir / FILES["rejected", "csv"], _csv(HARD_NEGATIVE_COLUMNS, rejected)),
    ]
    log.info(
        "exported %d accepted and %d rejected detections to %s; left out: %d in conflict, %d unsure, %d pending",
        summary.accepted,
        summary.rejected,
        out_dir,
        summary.conflict,
        summary.unsure,
        summary.pending,
    )
    return summary
