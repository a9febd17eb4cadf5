"""STAC metadata of predicted scenes: an Item per scene, a Collection per prediction folder.

``impacts predict`` writes, beside a scene's outputs, ``OUT/NAME_stac.json``: a STAC 1.1
Item whose assets are the source scene, the probability COG (``NAME_prob.tif``) and the
detections (``NAME_detections.geojson`` and ``.csv``), with relative hrefs, so the folder
can move. ``OUT/collection.json`` is rebuilt from the folder's Items (atomically) once at
the end of an ``impacts predict`` run, and, after an LSF job array (whose elements do not
write it: hundreds of them would race on one file, each reading every Item), by
``impacts catalog OUT ...``.

Coordinates. STAC assumes Earth (WGS84) for ``bbox`` and ``geometry``; planetary catalogs
put lon/lat of their own body there and name the body with the Solar System extension.
So do we: ``bbox`` and ``geometry`` are planetocentric, east-positive longitudes and
latitudes in degrees on the Mars 2015 sphere (``IAU_2015:49900``), and every Item and the
Collection carry ``ssys:targets: ["Mars"]``. The scene grid is exact in the projection
extension: ``proj:code`` (e.g. ``IAU_2015:49910``, None when PROJ knows no code),
``proj:wkt2``, ``proj:shape`` and ``proj:transform``. ``datetime`` is the time of the
prediction (the pipeline does not know when the scene was acquired); ``impacts:model_version``
and ``impacts:detections`` say which model found how many detections.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pystac
from pystac.extensions.projection import ProjectionExtension

from impacts.atomic import read_marker, write_json_atomic
from tiling.crs import crs_code, to_lonlat

log = logging.getLogger(__name__)

SSYS_SCHEMA = "https://stac-extensions.github.io/ssys/v1.1.0/schema.json"
ITEM_SUFFIX = "_stac.json"
COLLECTION_FILE = "collection.json"
#: Points per edge of a scene's footprint: edges of a projected grid curve in lon/lat.
EDGE_POINTS = 8


def footprint(
    height: int, width: int, transform: Sequence[float], crs: Any
) -> tuple[list[float], dict[str, Any]]:
    """A scene's bbox and footprint polygon in Mars lon/lat degrees.

    The outline of the grid (pixel edges), :data:`EDGE_POINTS` points per edge, converted
    with :func:`tiling.crs.to_lonlat`.

    Args:
        height: Rows.
        width: Columns.
        transform: The grid's affine transform (GDAL order ``a, b, c, d, e, f``).
        crs: The scene's CRS.

    Returns:
        ``([west, south, east, north], GeoJSON polygon)``.

    Raises:
        SceneError: The scene has no Mars CRS.
    """
    a, b, c, d, e, f = (float(v) for v in tuple(transform)[:6])
    steps = [k / EDGE_POINTS for k in range(EDGE_POINTS)]
    # Counter-clockwise on a north-up grid: top-left -> bottom-left -> bottom-right -> top-right.
    edge_px = (
        [(0.0, height * s) for s in steps]
        + [(width * s, float(height)) for s in steps]
        + [(float(width), height * (1 - s)) for s in steps]
        + [(width * (1 - s), 0.0) for s in steps]
    )
    xs = [a * col + b * row + c for col, row in edge_px]
    ys = [d * col + e * row + f for col, row in edge_px]
    lons, lats = to_lonlat(crs, xs, ys)
    ring = [[round(lon, 7), round(lat, 7)] for lon, lat in zip(lons, lats, strict=True)]
    ring.append(ring[0])
    bbox = [min(lons), min(lats), max(lons), max(lats)]
    return [round(v, 7) for v in bbox], {"type": "Polygon", "coordinates": [ring]}


def _href(target: Path, folder: Path) -> str:
    """``target`` relative to ``folder`` (``./NAME_prob.tif``, ``../scenes/NAME.tif``)."""
    rel = os.path.relpath(target.resolve(), folder.resolve())
    return rel if rel.startswith("..") else f"./{rel}"


def scene_item(
    *,
    name: str,
    image: Path,
    outputs: dict[str, Path],
    height: int,
    width: int,
    transform: Sequence[float],
    crs: Any,
    model_version: str,
    detections: int,
    when: dt.datetime | None = None,
) -> pystac.Item:
    """The STAC Item of one predicted scene (see the module for what each field holds).

    Args:
        name: The scene name (the Item's id).
        image: The source scene file.
        outputs: ``prob``, ``geojson``, ``csv`` and ``stac`` paths (``stac``: where the Item
            goes; asset hrefs are relative to its folder).
        height: Rows of the scene grid.
        width: Columns.
        transform: The grid's affine transform.
        crs: The scene's CRS.
        model_version: The version of the model that predicted.
        detections: How many detections it found.
        when: The prediction time (UTC now when None).

    Returns:
        The Item.

    Raises:
        SceneError: The scene has no Mars CRS.
    """
    bbox, geometry = footprint(height, width, transform, crs)
    folder = outputs["stac"].parent
    item = pystac.Item(
        id=name,
        geometry=geometry,
        bbox=bbox,
        datetime=when or dt.datetime.now(dt.UTC),
        properties={
            "ssys:targets": ["Mars"],
            "ssys:target_class": "planet",
            "impacts:model_version": model_version,
            "impacts:detections": detections,
        },
        stac_extensions=[SSYS_SCHEMA],
    )
    proj = ProjectionExtension.ext(item, add_if_missing=True)
    proj.code = crs_code(crs)
    proj.wkt2 = crs.to_wkt(version="WKT2_2019") if hasattr(crs, "to_wkt") else str(crs)
    proj.shape = [height, width]
    proj.transform = [float(v) for v in tuple(transform)[:6]]
    assets = {
        "scene": (image, "image/tiff; application=geotiff", ["source"], "Source scene"),
        "probability": (outputs["prob"], pystac.MediaType.COG, ["data"], "Impact probability x 255"),
        "detections": (outputs["geojson"], pystac.MediaType.GEOJSON, ["data"], "Detections (scene CRS)"),
        "detections_csv": (outputs["csv"], "text/csv", ["metadata"], "Detections as CSV"),
    }
    for key, (path, media, roles, title) in assets.items():
        item.add_asset(key, pystac.Asset(_href(path, folder), title=title, media_type=media, roles=roles))
    return item


def write_item(item: pystac.Item, path: Path) -> Path:
    """Write an Item as ``path`` atomically, linked to ``collection.json`` beside it.

    Args:
        item: The Item.
        path: ``OUT/NAME_stac.json``.

    Returns:
        ``path``.
    """
    data = item.to_dict(include_self_link=False, transform_hrefs=False)
    data["collection"] = collection_id(path.parent)
    data["links"] = [
        {"rel": "collection", "href": f"./{COLLECTION_FILE}", "type": pystac.MediaType.JSON},
        {"rel": "parent", "href": f"./{COLLECTION_FILE}", "type": pystac.MediaType.JSON},
    ]
    return write_json_atomic(path, data)


def collection_id(folder: Path) -> str:
    """The Collection id of a prediction folder: ``impacts-<folder name>``."""
    return f"impacts-{folder.resolve().name}"


def write_collection(folder: Path) -> Path | None:
    """Rebuild ``folder/collection.json`` from the Items in the folder, atomically.

    Args:
        folder: A prediction folder.

    Returns:
        The collection's path, or None when the folder holds no readable Item.
    """
    items = []
    for path in sorted(folder.glob(f"*{ITEM_SUFFIX}")):
        data = read_marker(path)  # a half-written or foreign file is skipped with a warning
        if data is None or data.get("type") != "Feature" or not data.get("bbox"):
            continue
        items.append((path, data))
    if not items:
        return None
    boxes = [d["bbox"] for _, d in items]
    times = sorted(d["properties"]["datetime"] for _, d in items)
    collection = pystac.Collection(
        id=collection_id(folder),
        description="Fresh impact candidates predicted by `impacts predict`: one Item per scene "
        "(probability COG, detections). bbox: planetocentric lon/lat degrees on Mars (IAU_2015:49900).",
        extent=pystac.Extent(
            pystac.SpatialExtent(
                [
                    [
                        min(b[0] for b in boxes),
                        min(b[1] for b in boxes),
                        max(b[2] for b in boxes),
                        max(b[3] for b in boxes),
                    ]
                ]
            ),
            pystac.TemporalExtent([[_parse(times[0]), _parse(times[-1])]]),
        ),
        license="other",
        extra_fields={"ssys:targets": ["Mars"], "ssys:target_class": "planet"},
        stac_extensions=[SSYS_SCHEMA],
    )
    data = collection.to_dict(include_self_link=False, transform_hrefs=False)
    data["links"] = [
        {"rel": "item", "href": f"./{path.name}", "type": pystac.MediaType.GEOJSON} for path, _ in items
    ]
    return write_json_atomic(folder / COLLECTION_FILE, data)


def _parse(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
