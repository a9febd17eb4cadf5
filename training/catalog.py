"""``impacts catalog``: every scene's detections in one GeoPackage or GeoParquet, in lon/lat.

Reads each prediction folder's per-scene detections (``NAME_detections.geojson``, or
``NAME_detections.csv`` where the GeoJSON is missing) as :class:`impacts.detections.Detection`
records and writes one table, a row per detection: every record field, then ``lon`` and
``lat`` (the centroid: planetocentric, east-positive degrees on the Mars 2015 sphere,
``IAU_2015:49900``) and ``source`` (the file it came from). The geometry is the detection's
box as a polygon in the same lon/lat: a box is what the analyst looks at, and a point is
one click away (``lon``/``lat``).

The scene CRS comes from the GeoJSON's ``crs`` member (the WKT that ``impacts predict``
writes), else from the Item ``NAME_stac.json`` (``proj:wkt2``), else from ``NAME_prob.tif``.
A file that cannot be read, or whose detections cannot be placed in lon/lat, is reported
(one line naming it) and the others go on. The catalog is written under a temporary name
and renamed (:mod:`impacts.atomic`).

GeoPackage goes through pyogrio (GDAL); GeoParquet (1.1, WKB geometry, the CRS as
PROJJSON) through pyarrow, an optional dependency (``pip install mars-impacts[parquet]``).
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from impacts.atomic import atomic_path, read_marker
from impacts.detections import FIELD_NAMES, Detection
from impacts.errors import ConfigError, DetectionImportError, ImpactsError
from tiling.crs import MARS_LONLAT, to_lonlat
from tiling.io import open_image
from training.stac import write_collection

log = logging.getLogger(__name__)

DETECTIONS_SUFFIX = "_detections"
#: Columns of the catalog, before the geometry.
CATALOG_COLUMNS = [*FIELD_NAMES, "lon", "lat", "source"]
FORMATS = {".gpkg": "GPKG", ".parquet": "Parquet"}
LAYER = "detections"


@dataclass
class CatalogRows:
    """Rows of the catalog being built (columns of :data:`CATALOG_COLUMNS` + box polygons)."""

    columns: dict[str, list[Any]] = field(default_factory=lambda: {c: [] for c in CATALOG_COLUMNS})
    polygons: list[list[tuple[float, float]]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.polygons)


@dataclass
class CatalogResult:
    """What ``build_catalog`` did: rows written, files read, one line per problem."""

    path: Path | None
    detections: int
    files: int
    problems: list[str]


def detection_files(folder: Path) -> list[Path]:
    """A prediction folder's detection files: per scene the GeoJSON, else the CSV.

    Args:
        folder: A folder written by ``impacts predict``.

    Returns:
        The files, sorted by scene name.

    Raises:
        DetectionImportError: The folder does not exist or holds no detection file.
    """
    if not folder.is_dir():
        raise DetectionImportError(f"{folder}: no such folder; pass folders written by `impacts predict`")
    by_scene: dict[str, Path] = {}
    for suffix in (".csv", ".geojson"):  # the GeoJSON wins: it carries the CRS
        for path in folder.glob(f"*{DETECTIONS_SUFFIX}{suffix}"):
            by_scene[path.name[: -len(DETECTIONS_SUFFIX + suffix)]] = path
    if not by_scene:
        raise DetectionImportError(
            f"{folder}: no NAME_detections.geojson or .csv; run `impacts predict ... --out {folder}` first"
        )
    return [by_scene[name] for name in sorted(by_scene)]


def _scene_crs(path: Path, scene_prefix: str) -> Any:
    """The scene CRS of a CSV's scene: from its STAC Item, else from its probability map."""
    item = read_marker(path.with_name(f"{scene_prefix}_stac.json"))
    wkt = (item or {}).get("properties", {}).get("proj:wkt2")
    if wkt:
        return wkt
    prob = path.with_name(f"{scene_prefix}_prob.tif")
    if prob.is_file():
        with open_image(prob) as (_, info):
            return info.crs
    return None


def read_detections(path: Path) -> tuple[list[Detection], Any]:
    """The records of one detections file and the scene CRS they are in.

    Args:
        path: ``NAME_detections.geojson`` or ``NAME_detections.csv``.

    Returns:
        ``(records, crs)``; the CRS is a WKT string, a rasterio CRS or None.

    Raises:
        DetectionImportError: The file cannot be read or parsed, or a record is invalid.
    """
    try:
        if path.suffix == ".geojson":
            data = json.loads(path.read_text())
            features = data["features"]
            crs = ((data.get("crs") or {}).get("properties") or {}).get("name")
            records = [
                Detection.from_properties(f["properties"], f"{path}: feature {k}")
                for k, f in enumerate(features)
            ]
        else:
            with path.open(newline="") as fh:
                rows = list(csv.DictReader(fh))
            records = [Detection.from_properties(r, f"{path}: row {k + 2}") for k, r in enumerate(rows)]
            crs = _scene_crs(path, path.name[: -len(DETECTIONS_SUFFIX + ".csv")])
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise DetectionImportError(
            f"{path}: cannot be read ({type(exc).__name__}: {exc}); predict the scene again"
        ) from exc
    return records, crs


def add_records(rows: CatalogRows, records: list[Detection], crs: Any, source: Path) -> None:
    """Append a scene's records to ``rows`` with their lon/lat centroid and box polygon.

    Args:
        rows: The catalog being built.
        records: The scene's records.
        crs: Their scene CRS.
        source: The file they came from.

    Raises:
        DetectionImportError: A record has no map coordinates.
        SceneError: The CRS is missing or not of Mars.
    """
    if not records:
        return
    placed = [r for r in records if None not in (r.centroid_x, r.x_min, r.y_min, r.x_max, r.y_max)]
    if len(placed) < len(records):
        raise DetectionImportError(
            f"{source}: detections without map coordinates; predict a georeferenced scene"
        )
    xs: list[float] = []
    ys: list[float] = []
    for r in placed:
        x0, y0, x1, y1 = r.x_min, r.y_min, r.x_max, r.y_max
        # Centroid, then the box corners counter-clockwise from the lower left.
        xs += [r.centroid_x, x0, x1, x1, x0]  # type: ignore[list-item]
        ys += [r.centroid_y, y0, y0, y1, y1]  # type: ignore[list-item]
    lons, lats = to_lonlat(crs, xs, ys)
    for k, r in enumerate(placed):
        at = 5 * k
        for name, value in r.properties().items():
            rows.columns[name].append(value)
        rows.columns["lon"].append(round(lons[at], 7))
        rows.columns["lat"].append(round(lats[at], 7))
        rows.columns["source"].append(str(source))
        ring = [(round(lons[at + j], 7), round(lats[at + j], 7)) for j in (1, 2, 3, 4, 1)]
        rows.polygons.append(ring)


def build_catalog(folders: Iterable[Path], out: Path) -> CatalogResult:
    """Merge the detections of prediction folders into one catalog file.

    Args:
        folders: Folders written by ``impacts predict``; each gets its STAC
            ``collection.json`` rebuilt (the step after a job array).
        out: ``FILE.gpkg`` or ``FILE.parquet``.

    Returns:
        What was written and one line per folder or file that could not be used (the
        others are in the catalog).

    Raises:
        ConfigError: ``out`` has another extension, or GeoParquet is asked without pyarrow.
    """
    folders = list(folders)
    driver = FORMATS.get(out.suffix.lower())
    if driver is None:
        raise ConfigError(f"--out {out}: use a .gpkg (GeoPackage) or .parquet (GeoParquet) file")
    rows = CatalogRows()
    problems: list[str] = []
    files = 0
    for folder in folders:
        try:
            paths = detection_files(folder)
        except ImpactsError as exc:
            problems.append(str(exc))
            continue
        for path in paths:
            try:
                records, crs = read_detections(path)
                add_records(rows, records, crs, path)
            except ImpactsError as exc:
                msg = str(exc)
                problems.append(msg if str(path) in msg else f"{path}: {msg}")
                continue
            files += 1
    out.parent.mkdir(parents=True, exist_ok=True)
    if driver == "GPKG":
        write_geopackage(rows, out)
    else:
        write_geoparquet(rows, out)
    for folder in folders:  # after a job array, the one place each folder's Collection is written
        if folder.is_dir():
            write_collection(folder)
    return CatalogResult(out, len(rows), files, problems)


def _wkb(rows: CatalogRows) -> np.ndarray:
    import shapely

    polygons = [shapely.Polygon(ring) for ring in rows.polygons]
    return np.asarray(shapely.to_wkb(polygons) if polygons else [], dtype=object)


def _field_arrays(rows: CatalogRows) -> list[np.ndarray]:
    arrays = []
    for name in CATALOG_COLUMNS:
        values = rows.columns[name]
        kinds = {type(v) for v in values if v is not None}
        if kinds <= {int} and None not in values:
            arrays.append(np.asarray(values, dtype=np.int64))
        elif kinds <= {int, float}:
            arrays.append(np.asarray([np.nan if v is None else v for v in values], dtype=np.float64))
        else:
            arrays.append(np.asarray(values, dtype=object))
    return arrays


def write_geopackage(rows: CatalogRows, out: Path) -> Path:
    """Write the catalog as a GeoPackage layer ``detections`` (lon/lat), atomically.

    Args:
        rows: The catalog.
        out: The ``.gpkg`` file.

    Returns:
        ``out``.
    """
    import pyogrio.raw

    with atomic_path(out) as tmp:
        gpkg = tmp.with_name(tmp.name + ".gpkg")  # GDAL wants the extension
        try:
            pyogrio.raw.write(
                gpkg,
                _wkb(rows),
                _field_arrays(rows),
                list(CATALOG_COLUMNS),
                layer=LAYER,
                driver="GPKG",
                geometry_type="Polygon",
                crs=MARS_LONLAT.to_wkt(version="WKT2_2019"),
            )
            gpkg.rename(tmp)
        finally:
            gpkg.unlink(missing_ok=True)
    return out


def write_geoparquet(rows: CatalogRows, out: Path) -> Path:
    """Write the catalog as GeoParquet 1.1 (WKB polygons, lon/lat CRS as PROJJSON), atomically.

    Args:
        rows: The catalog.
        out: The ``.parquet`` file.

    Returns:
        ``out``.

    Raises:
        ConfigError: pyarrow is not installed.
    """
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise ConfigError(
            "GeoParquet needs pyarrow: pip install 'mars-impacts[parquet]', or write a .gpkg"
        ) from exc
    lons = [p[0] for ring in rows.polygons for p in ring]
    lats = [p[1] for ring in rows.polygons for p in ring]
    geo = {
        "version": "1.1.0",
        "primary_column": "geometry",
        "columns": {
            "geometry": {
                "encoding": "WKB",
                "geometry_types": ["Polygon"],
                "crs": MARS_LONLAT.to_dict(projjson=True),
                "bbox": [min(lons), min(lats), max(lons), max(lats)] if lons else [],
            }
        },
    }
    columns = {
        name: pa.array(array) for name, array in zip(CATALOG_COLUMNS, _field_arrays(rows), strict=True)
    }
    columns["geometry"] = pa.array(list(_wkb(rows)), type=pa.binary())
    table = pa.table(columns).replace_schema_metadata({"geo": json.dumps(geo)})
    with atomic_path(out) as tmp:
        pq.write_table(table, tmp)
    return out
