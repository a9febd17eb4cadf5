"""The detection record: one detected impact, and its GeoJSON, CSV and JSON forms.

``impacts predict`` writes it (``NAME_detections.geojson`` and ``.csv``), the service answers
it for a tile, the review importer reads it back and the review export writes it with the
analysts' decisions. Pixel fields are scene (or tile) pixels: an inclusive box and the
centroid of the detected pixels. Map fields are in the scene's CRS, from the grid's affine
transform, at pixel centres for the centroid and pixel edges for the box; they are None for
a tile without georeference. ``score`` is the peak probability.

Forms:

- :meth:`Detection.properties`: a flat dict in :data:`CSV_COLUMNS` order (a CSV row, the
  properties of a GeoJSON feature, a JSON object).
- :meth:`Detection.feature`: a GeoJSON feature whose geometry is the box polygon.
- :meth:`Detection.from_properties`: back from a CSV row or feature properties, checked.
- :func:`feature_collection`: a scene's detections as a GeoJSON FeatureCollection.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter, ValidationError

from impacts.errors import DetectionImportError


@dataclass(frozen=True, kw_only=True)
class Detection:
    """One detected impact (see the module for the meaning of the fields; the map fields
    default to None, for tiles without georeference and for files that leave them out)."""

    id: str
    scene: str | None
    centroid_row: float
    centroid_col: float
    centroid_x: float | None = None
    centroid_y: float | None = None
    row_min: int
    col_min: int
    row_max: int
    col_max: int
    x_min: float | None = None
    y_min: float | None = None
    x_max: float | None = None
    y_max: float | None = None
    area_px: int
    area_m2: float | None = None
    score: float
    model_version: str

    @classmethod
    def locate(
        cls,
        *,
        id: str,
        scene: str | None,
        row_min: int,
        col_min: int,
        row_max: int,
        col_max: int,
        centroid_row: float,
        centroid_col: float,
        area_px: int,
        score: float,
        model_version: str,
        transform: Sequence[float] | None = None,
    ) -> Detection:
        """A record from a detection's pixel facts and the grid's affine transform.

        Map coordinates: ``x = a * col + b * row + c``, ``y = d * col + e * row + f`` with the
        transform ``(a, b, c, d, e, f)`` (GDAL order, e.g. a rasterio ``Affine``); the centroid
        at pixel centres (``+ 0.5``), the box at the outer pixel edges. Rounding, once for
        every form: centroid pixels to 0.01, map coordinates to 0.001, area to 0.1 m², score
        to 0.0001.

        Args:
            id: ``SCENE-00003`` style id, unique in its scene.
            scene: Scene name, None for an anonymous tile.
            row_min: First row of the inclusive box (likewise ``col_min``, ``row_max``, ``col_max``).
            col_min: First column.
            row_max: Last row.
            col_max: Last column.
            centroid_row: Mean row of the detected pixels.
            centroid_col: Mean column.
            area_px: Detected pixels.
            score: Peak probability.
            model_version: Version of the model that predicted.
            transform: The grid's affine transform; None for a tile without georeference.

        Returns:
            The record.
        """
        map_fields: dict[str, float | None] = dict.fromkeys(
            ("centroid_x", "centroid_y", "x_min", "y_min", "x_max", "y_max", "area_m2")
        )
        if transform is not None:
            a, b, c, d, e, f = (float(v) for v in tuple(transform)[:6])

            def to_map(col: float, row: float) -> tuple[float, float]:
                return a * col + b * row + c, d * col + e * row + f

            cx, cy = to_map(centroid_col + 0.5, centroid_row + 0.5)
            x0, y0 = to_map(col_min, row_max + 1)
            x1, y1 = to_map(col_max + 1, row_min)
            map_fields.update(
                centroid_x=round(cx, 3),
                centroid_y=round(cy, 3),
                x_min=round(min(x0, x1), 3),
                y_min=round(min(y0, y1), 3),
                x_max=round(max(x0, x1), 3),
                y_max=round(max(y0, y1), 3),
                area_m2=round(area_px * abs(a) * abs(e), 1),
            )
        return cls(
            id=id,
            scene=scene,
            centroid_row=round(centroid_row, 2),
            centroid_col=round(centroid_col, 2),
            row_min=int(row_min),
            col_min=int(col_min),
            row_max=int(row_max),
            col_max=int(col_max),
            area_px=int(area_px),
            score=round(float(score), 4),
            model_version=model_version,
            **map_fields,
        )

    def properties(self) -> dict[str, Any]:
        """The flat form, in :data:`CSV_COLUMNS` order."""
        return dataclasses.asdict(self)

    def feature(self, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The GeoJSON feature: the box polygon in map coordinates (None without them), the
        record as properties, and ``extra`` properties after them (e.g. review decisions)."""
        geometry = None
        if None not in (self.x_min, self.y_min, self.x_max, self.y_max):
            x0, y0, x1, y1 = self.x_min, self.y_min, self.x_max, self.y_max
            ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
            geometry = {"type": "Polygon", "coordinates": [ring]}
        properties = {**self.properties(), **(extra or {})}
        return {"type": "Feature", "id": self.id, "geometry": geometry, "properties": properties}

    @classmethod
    def split(cls, flat: Mapping[str, Any]) -> tuple[Detection, dict[str, Any]]:
        """A flat form with more keys (e.g. an export row) as ``(record, the other keys)``."""
        return cls(**{k: flat[k] for k in FIELD_NAMES}), {
            k: v for k, v in flat.items() if k not in FIELD_NAMES
        }

    @classmethod
    def from_properties(cls, properties: Mapping[str, Any], where: str = "detection") -> Detection:
        """Read a record back from a CSV row (strings) or a feature's properties.

        Args:
            properties: The flat form; unknown keys are ignored (other tools add columns).
            where: Named in the error, e.g. ``FILE: feature 3``.

        Returns:
            The record.

        Raises:
            DetectionImportError: A field is missing or of the wrong type, or the box is empty.
        """
        values = {k: (None if v == "" else v) for k, v in properties.items() if k in FIELD_NAMES}
        try:
            record = _ADAPTER.validate_python(values)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise DetectionImportError(
                f"{where} ({problems}); pass detections written by `impacts predict`"
            ) from exc
        if record.row_min > record.row_max or record.col_min > record.col_max:
            raise DetectionImportError(f"{where}: the box is empty (min > max)")
        return record


FIELD_NAMES = tuple(f.name for f in dataclasses.fields(Detection))
#: The columns of ``NAME_detections.csv`` (and the keys of every flat form).
CSV_COLUMNS = list(FIELD_NAMES)
_ADAPTER = TypeAdapter(Detection)


def feature_collection(detections: Iterable[Detection], name: str, crs_wkt: str | None) -> dict[str, Any]:
    """A scene's detections as a GeoJSON FeatureCollection (legacy ``crs`` member: the WKT).

    Args:
        detections: The records.
        name: The collection's name, e.g. ``NAME_detections``.
        crs_wkt: The scene CRS as WKT, or None.

    Returns:
        The collection, ready for ``json.dump``.
    """
    return {
        "type": "FeatureCollection",
        "name": name,
        "crs": {"type": "name", "properties": {"name": crs_wkt}},
        "features": [d.feature() for d in detections],
    }
