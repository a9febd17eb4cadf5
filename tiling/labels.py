"""Labels from vector catalogs: ``NAME_labels.geojson|gpkg|csv`` rasterized window by window.

A scene can be labelled by a catalog instead of a ``NAME_mask`` raster:

- **points** with a crater diameter (``diameter_m``, metres): a GeoJSON/GeoPackage point
  layer with a ``diameter_m`` property, or a CSV with columns ``lon,lat,diameter_m``
  (degrees) or ``x,y,diameter_m`` (the scene's CRS; used when both pairs are there);
- **polygons** (GeoJSON/GeoPackage): the impact's outline itself, no diameter needed.

CRS rules: a file that declares a CRS on the scene's body (same semi-major axis within
1 %) is transformed to the scene's CRS; GeoJSON's default (WGS 84 lon/lat, what GDAL reports
for a file without ``crs``) on a non-Earth scene is read as lon/lat on the scene's body; a
CRS of another body is refused. Lon/lat without a CRS (CSV ``lon,lat``, a GeoPackage layer
without SRS) are planetocentric degrees on the body's sphere (Mars: ``IAU_2015:49900``,
:data:`tiling.crs.MARS_LONLAT`); a file without CRS on a scene without CRS is in the
scene's grid coordinates.

Footprint: the dark blast zone of a new impact reaches several crater radii, so a point is
rasterized as a disc of :data:`FOOTPRINT_RADII` crater radii (``radius_px = FOOTPRINT_RADII
* diameter_m / 2 / metres per pixel``); a pixel is an impact pixel when its centre lies in
the disc (as :func:`rasterio.features.rasterize` burns polygons). The same radius is the
impact's ``radius_px`` for whole-scene matching (:meth:`LabelMask.known_impacts`).

Every label must touch the scene; a bad file, row or CRS raises one line naming the file,
the row (``line N`` of a CSV, ``feature N`` of a GeoJSON, ``fid N`` of a GeoPackage) and the
fix. :class:`LabelMask` answers ``read(1, window=...)`` like a rasterio mask dataset, so
every mask reader uses it unchanged; a grid index (cells of :data:`INDEX_CELL_PX`) gives
each window only the labels whose footprint box touches it. Memory: three floats per point,
the polygons, and about one index entry per label: never a whole-scene mask.
"""

from __future__ import annotations

import csv
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from rasterio.crs import CRS
from rasterio.transform import Affine
from rasterio.windows import Window

from impacts.errors import GridMismatchError, SceneError
from impacts.scenes import LABELS_SUFFIX, scene_file
from tiling.crs import MARS_LONLAT, MARS_RADIUS_M

if TYPE_CHECKING:
    from tiling.synth import KnownObject

log = logging.getLogger(__name__)

#: Extensions of label catalogs, in the order a scene's catalog is looked for.
CATALOG_EXTS = (".geojson", ".gpkg", ".csv")
#: Radius of a point's impact footprint (the blast zone), in crater radii.
FOOTPRINT_RADII = 5.0
#: Side of the index cells, px.
INDEX_CELL_PX = 256
DIAMETER = "diameter_m"
_FIX_COLUMNS = "a label CSV needs lon,lat,diameter_m (degrees) or x,y,diameter_m (the scene's CRS)"
_POINT_TYPES, _POLYGON_TYPES = (0, 4), (3, 6)  # shapely type ids: (Multi)Point, (Multi)Polygon


def is_label_catalog(path: Path) -> bool:
    """Whether ``path`` names a label catalog (``NAME_labels.geojson|gpkg|csv``)."""
    return path.suffix.lower() in CATALOG_EXTS and path.stem.endswith(LABELS_SUFFIX)


def find_catalog(folder: Path, name: str) -> Path | None:
    """The label catalog of scene ``name`` in ``folder`` (the first of :data:`CATALOG_EXTS`
    that exists; a warning names the others), or None."""
    found = [p for ext in CATALOG_EXTS if (p := scene_file(folder, name, LABELS_SUFFIX, ext)).is_file()]
    if len(found) > 1:
        log.warning("scene %s: several label catalogs; using %s, not %s", name, found[0].name, found[1].name)
    return found[0] if found else None


def scene_labels(folder: Path, name: str, mask: Path | None) -> Path | None:
    """A scene's labels: its mask raster when it has one (a catalog beside it is ignored,
    with a warning: the mask is on the image's grid already), else its catalog, else None.

    Args:
        folder: The scenes folder.
        name: The scene name.
        mask: Its mask raster, None when there is none.

    Returns:
        The labels' path, or None.
    """
    catalog = find_catalog(folder, name)
    if mask is not None and catalog is not None:
        log.warning("scene %s: both %s and %s; using the mask, move one away", name, mask.name, catalog.name)
    return mask if mask is not None else catalog


@dataclass
class _Raw:
    """A catalog as read: point coordinates and diameters, polygons, each with its row
    number, and the coordinates' CRS as the file gives it."""

    unit: str  # how rows are named: "line", "feature" or "fid"
    xs: np.ndarray
    ys: np.ndarray
    diameters: np.ndarray
    point_rows: np.ndarray
    polygons: np.ndarray  # shapely geometries
    polygon_rows: np.ndarray
    crs: str | None
    lonlat: bool  # CSV lon/lat columns (degrees, no CRS)


def _read_csv(path: Path) -> _Raw:
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        columns = {h.strip().lower(): i for i, h in enumerate(next(reader, []))}
        pair = next((p for p in (("x", "y"), ("lon", "lat")) if set(p) <= columns.keys()), None)
        if pair is None or DIAMETER not in columns:
            raise SceneError(f"{path}: line 1: columns {', '.join(columns) or 'none'}; {_FIX_COLUMNS}")
        index = [columns[pair[0]], columns[pair[1]], columns[DIAMETER]]
        values, rows = [], []
        for rec in reader:
            if not any(c.strip() for c in rec):
                continue
            try:
                values.append([float(rec[i]) for i in index])
            except (ValueError, IndexError):
                cells = [rec[i] if i < len(rec) else "" for i in index]
                raise SceneError(
                    f"{path}: line {reader.line_num}: {','.join(cells)!r} in {pair[0]},{pair[1]},{DIAMETER} "
                    "is not three numbers; fix or delete the line"
                ) from None
            rows.append(reader.line_num)
    table = np.array(values, dtype=np.float64).reshape(-1, 3)
    bad = np.flatnonzero(~np.isfinite(table[:, :2]).all(axis=1))
    if bad.size:
        raise SceneError(f"{path}: line {rows[bad[0]]}: coordinates are not finite; fix or delete the line")
    x, y, diameters = table[:, 0], table[:, 1], table[:, 2]
    no_polygons, lonlat = np.array([], dtype=object), pair == ("lon", "lat")
    return _Raw("line", x, y, diameters, np.array(rows), no_polygons, np.array([], int), None, lonlat)


def _read_vector(path: Path) -> _Raw:
    import pyogrio
    import shapely
    from pyogrio.errors import DataLayerError, DataSourceError

    try:
        layers = pyogrio.list_layers(path)
        if len(layers) > 1:
            log.warning("%s: %d layers; reading the first, %s", path, len(layers), layers[0][0])
        meta, fids, wkb, fields = pyogrio.raw.read(path, return_fids=True)
    except (DataSourceError, DataLayerError) as exc:
        raise SceneError(f"{path}: cannot be read as a vector file ({exc}); re-export it (ogr2ogr)") from exc
    unit = "fid" if path.suffix.lower() == ".gpkg" else "feature"
    rows = np.asarray(fids, np.int64) if unit == "fid" else np.arange(1, len(fids) + 1)  # GeoJSON: order
    geoms = shapely.from_wkb(wkb)
    types = shapely.get_type_id(geoms)  # -1 for a missing geometry
    for k in np.flatnonzero(~np.isin(types, _POINT_TYPES + _POLYGON_TYPES) | shapely.is_empty(geoms)):
        shape = geoms[k]
        what = (
            "no geometry" if shape is None else f"{'an empty' if shape.is_empty else 'a'} {shape.geom_type}"
        )
        raise SceneError(
            f"{path}: {unit} {rows[k]}: {what}; labels are points with {DIAMETER} or polygons, fix or delete it"
        )
    is_point = np.isin(types, _POINT_TYPES)
    names = [str(f).lower() for f in meta["fields"]]
    diameters = np.full(len(geoms), np.nan)
    if is_point.any():
        if DIAMETER not in names:
            raise SceneError(
                f"{path}: {unit} {rows[np.argmax(is_point)]}: points need a {DIAMETER} property (crater "
                f"diameter, metres) and the file has {', '.join(names) or 'none'}; add it"
            )
        for k in np.flatnonzero(is_point):
            value = fields[names.index(DIAMETER)][k]
            try:
                diameters[k] = float(value)
            except (TypeError, ValueError):
                raise SceneError(
                    f"{path}: {unit} {rows[k]}: {DIAMETER} {value!r} is not a number; fix or delete it"
                ) from None
    parts, owner = shapely.get_parts(geoms[is_point], return_index=True)
    xy = shapely.get_coordinates(parts)
    owner = np.flatnonzero(is_point)[owner]
    points = (xy[:, 0], xy[:, 1], diameters[owner], rows[owner])
    return _Raw(unit, *points, geoms[~is_point], rows[~is_point], meta["crs"], False)


def _semi_major_m(crs: Any) -> float | None:
    import pyproj

    try:
        ellipsoid = pyproj.CRS.from_user_input(crs.to_wkt() if isinstance(crs, CRS) else crs).ellipsoid
    except pyproj.exceptions.CRSError:
        return None
    return float(ellipsoid.semi_major_metre) if ellipsoid is not None else None


def _body_lonlat(scene_crs: CRS) -> CRS:
    """Lon/lat degrees on the scene's body: the Mars sphere for a Mars scene, else the
    scene's own geographic CRS."""
    import pyproj

    radius = _semi_major_m(scene_crs)
    if radius is not None and abs(radius - MARS_RADIUS_M) <= 0.01 * MARS_RADIUS_M:
        return MARS_LONLAT
    geodetic = pyproj.CRS.from_user_input(scene_crs.to_wkt()).geodetic_crs
    return CRS.from_wkt(geodetic.to_wkt()) if geodetic is not None else MARS_LONLAT


def _source_crs(path: Path, raw: _Raw, scene_crs: CRS | None) -> CRS | None:
    """The CRS of the catalog's coordinates, or None when they are the scene's own."""
    if raw.crs is None and not raw.lonlat:
        return _body_lonlat(scene_crs) if scene_crs is not None and raw.unit != "line" else None
    if scene_crs is None:
        raise GridMismatchError(
            f"{path}: {'lon/lat columns' if raw.lonlat else 'CRS ' + str(raw.crs)[:60]} but the scene has no CRS; "
            "give x,y in the scene's grid coordinates, or georeference the scene (gdal_edit -a_srs)"
        )
    if raw.crs is None:
        return _body_lonlat(scene_crs)
    declared = CRS.from_user_input(raw.crs)
    mine, theirs = _semi_major_m(scene_crs), _semi_major_m(declared)
    if mine is not None and theirs is not None and abs(mine - theirs) <= 0.01 * mine:
        return declared
    if path.suffix.lower() == ".geojson" and declared.to_epsg() == 4326:
        log.info("%s: GeoJSON lon/lat read as degrees on the scene's body", path)
        return _body_lonlat(scene_crs)
    body = f"{theirs / 1000:.0f} km" if theirs else "an unknown radius"
    raise GridMismatchError(
        f"{path}: CRS {declared.to_string()[:60]} is on a body of {body}, the scene's on "
        f"{(mine or 0) / 1000:.0f} km; reproject the labels to the scene's CRS or write lon/lat on its body"
    )


def _transformer(source: CRS | None, scene_crs: CRS | None, pixels: Affine) -> Any:
    """``(x, y) -> (col, row)``: source coordinates to continuous scene pixels."""
    from rasterio.warp import transform

    inverse = ~pixels

    def to_pixels(xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if source is not None and len(xs) and source != scene_crs:
            xs, ys = (np.asarray(v, dtype=np.float64) for v in transform(source, scene_crs, xs, ys))
        a, b, c, d, e, f = inverse[:6]
        return a * xs + b * ys + c, d * xs + e * ys + f

    return to_pixels


def _metres_per_px(pixels: Affine, crs: CRS | None) -> float:
    """Ground size of a pixel side in metres (the grid's units when it has no CRS)."""
    side = math.sqrt(abs(pixels.a * pixels.e - pixels.b * pixels.d))
    if crs is None:
        return side
    if crs.is_geographic:  # degrees: a degree of latitude on the body
        return side * math.radians(1.0) * (_semi_major_m(crs) or MARS_RADIUS_M)
    return side * float(crs.linear_units_factor[1])


def open_labels(
    path: Path,
    height: int,
    width: int,
    transform: Affine,
    crs: CRS | None,
    footprint_radii: float = FOOTPRINT_RADII,
) -> LabelMask:
    """Read and check a label catalog onto a scene's grid.

    Args:
        path: ``NAME_labels.geojson|gpkg|csv``.
        height: The scene's rows.
        width: The scene's columns.
        transform: The scene's affine transform.
        crs: The scene's CRS (None: the catalog must be in grid coordinates).
        footprint_radii: Footprint disc radius of a point, in crater radii.

    Returns:
        The read-only label mask.

    Raises:
        SceneError: The file cannot be read, lacks a column, has a row that is no label, a
            non-positive diameter, or a label that does not touch the scene.
        GridMismatchError: Its CRS cannot be matched to the scene's.
    """
    raw = _read_csv(path) if path.suffix.lower() == ".csv" else _read_vector(path)
    bad = np.flatnonzero(~(raw.diameters > 0))
    if bad.size:
        raise SceneError(
            f"{path}: {raw.unit} {raw.point_rows[bad[0]]}: {DIAMETER} {raw.diameters[bad[0]]:g} is not a positive "
            f"number of metres ({bad.size} such row(s)); fix or delete them"
        )
    if raw.lonlat:
        out = np.flatnonzero((np.abs(raw.ys) > 90) | (np.abs(raw.xs) > 360))
        if out.size:
            raise SceneError(
                f"{path}: line {raw.point_rows[out[0]]}: lon {raw.xs[out[0]]:g}, lat {raw.ys[out[0]]:g} are not "
                "degrees (lat -90..90, lon -360..360); fix the line, or name the columns x,y for map coordinates"
            )
    to_pixels = _transformer(_source_crs(path, raw, crs), crs, transform)
    cols, rows = to_pixels(raw.xs, raw.ys)
    radii = footprint_radii * raw.diameters / 2 / _metres_per_px(transform, crs)
    polygons = raw.polygons
    if len(polygons):
        import shapely

        polygons = shapely.transform(polygons, lambda xy: np.column_stack(to_pixels(xy[:, 0], xy[:, 1])))
        boxes = shapely.bounds(polygons)
    else:
        boxes = np.zeros((0, 4))
    boxes = np.concatenate([np.column_stack([cols - radii, rows - radii, cols + radii, rows + radii]), boxes])
    label_rows = np.concatenate([raw.point_rows, raw.polygon_rows])
    for k in np.flatnonzero(~np.isfinite(boxes).all(axis=1)):
        raise SceneError(
            f"{path}: {raw.unit} {label_rows[k]}: cannot be placed on the scene's grid (its coordinates do not "
            "transform to the scene's CRS); check the coordinates and the file's CRS"
        )
    outside = (boxes[:, 2] <= 0) | (boxes[:, 0] >= width) | (boxes[:, 3] <= 0) | (boxes[:, 1] >= height)
    for k in np.flatnonzero(outside)[:1]:
        raise SceneError(
            f"{path}: {raw.unit} {label_rows[k]}: lies outside the scene's {height}x{width} px grid (at pixel row "
            f"{(boxes[k, 1] + boxes[k, 3]) / 2:.1f}, col {(boxes[k, 0] + boxes[k, 2]) / 2:.1f}; "
            f"{np.count_nonzero(outside)} such label(s)); clip the catalog to the scene or check its CRS"
        )
    return LabelMask(path, height, width, transform, crs, rows, cols, radii, polygons, boxes)


def open_catalog_on(path: Path, grid: Any, footprint_radii: float = FOOTPRINT_RADII) -> LabelMask:
    """:func:`open_labels` on the grid of an open raster (its ``height``, ``width``,
    ``transform`` and ``crs``: the scene's image)."""
    return open_labels(path, grid.height, grid.width, grid.transform, grid.crs, footprint_radii)


class LabelMask:
    """A label catalog on a scene's grid, read like a one-band uint8 mask dataset
    (``read``, ``name``, ``height``, ``width``, ``count``, ``transform``, ``crs``)."""

    count = 1
    dtypes = ("uint8",)
    nodata = None
    driver = "labels"

    def __init__(
        self,
        path: Path,
        height: int,
        width: int,
        transform: Affine,
        crs: CRS | None,
        rows: np.ndarray,
        cols: np.ndarray,
        radii: np.ndarray,
        polygons: np.ndarray,
        boxes: np.ndarray,
        cell_px: int = INDEX_CELL_PX,
    ) -> None:
        self.name, self.height, self.width, self.transform, self.crs = (
            str(path),
            height,
            width,
            transform,
            crs,
        )
        self.rows, self.cols, self.radii, self.polygons = rows, cols, radii, polygons
        self.boxes = boxes  # (col_min, row_min, col_max, row_max) per label: points, then polygons
        self.cell_px = cell_px
        self._grid_shape = (max(1, -(-height // cell_px)), max(1, -(-width // cell_px)))
        self._starts, self._items = self._index()

    def __len__(self) -> int:
        return len(self.boxes)

    def _cells(
        self, c0: np.ndarray, r0: np.ndarray, c1: np.ndarray, r1: np.ndarray
    ) -> tuple[np.ndarray, ...]:
        n_rows, n_cols = self._grid_shape

        def cell(v: np.ndarray, n: int) -> np.ndarray:
            return np.clip(np.floor(v / self.cell_px), 0, n - 1).astype(np.int64)

        return cell(r0, n_rows), cell(r1, n_rows), cell(c0, n_cols), cell(c1, n_cols)

    def _index(self) -> tuple[np.ndarray, np.ndarray]:
        """Each label under every cell its box touches: cell -> labels as ``starts``
        (offsets per cell, CSR) and ``items``."""
        i0, i1, j0, j1 = self._cells(*self.boxes.T)
        n_j = j1 - j0 + 1
        counts = (i1 - i0 + 1) * n_j
        label = np.repeat(np.arange(len(counts)), counts)
        within = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
        cells = (i0[label] + within // n_j[label]) * self._grid_shape[1] + j0[label] + within % n_j[label]
        order = np.argsort(cells, kind="stable")
        n_cells = self._grid_shape[0] * self._grid_shape[1]
        starts = np.concatenate([[0], np.cumsum(np.bincount(cells, minlength=n_cells))])
        return starts, label[order]

    def candidates(self, row: int, col: int, height: int, width: int) -> np.ndarray:
        """Indices of the labels (points first, then polygons) whose footprint box touches
        the window: what :meth:`mask_window` draws."""
        i0, i1, j0, j1 = (
            int(v[0])
            for v in self._cells(*(np.array([v]) for v in (col, row, col + width - 1, row + height - 1)))
        )
        n_cols = self._grid_shape[1]
        found = [
            self._items[self._starts[i * n_cols + j0] : self._starts[i * n_cols + j1 + 1]]
            for i in range(i0, i1 + 1)
        ]
        labels = np.unique(np.concatenate(found)) if found else np.zeros(0, np.int64)
        b = self.boxes[labels]
        touch = (b[:, 2] > col) & (b[:, 0] < col + width) & (b[:, 3] > row) & (b[:, 1] < row + height)
        return labels[touch]

    def mask_window(self, row: int, col: int, height: int, width: int) -> np.ndarray:
        """The 0/1 mask of a window (pixel rows ``row..row+height-1``, columns likewise):
        only the labels touching it are drawn.

        Returns:
            A ``(height, width)`` uint8 array.
        """
        out = np.zeros((height, width), np.uint8)
        labels = self.candidates(row, col, height, width)
        n_points = len(self.radii)
        for k in labels[labels < n_points].tolist():
            cy, cx, r = self.rows[k], self.cols[k], self.radii[k]
            r0, r1 = max(row, math.ceil(cy - r - 0.5)), min(row + height, math.floor(cy + r - 0.5) + 1)
            c0, c1 = max(col, math.ceil(cx - r - 0.5)), min(col + width, math.floor(cx + r - 0.5) + 1)
            if r0 < r1 and c0 < c1:
                dy = (np.arange(r0, r1) + 0.5 - cy) ** 2
                dx = (np.arange(c0, c1) + 0.5 - cx) ** 2
                out[r0 - row : r1 - row, c0 - col : c1 - col] |= dy[:, None] + dx[None, :] <= r * r
        shapes = self.polygons[labels[labels >= n_points] - n_points]
        if len(shapes):
            from rasterio.features import rasterize

            window = Affine.translation(col, row)  # the geometries are in scene pixels
            rasterize(((g, 1) for g in shapes), out=out, transform=window, default_value=1)
        return out

    def read(
        self, indexes: int = 1, window: Window | None = None, out: np.ndarray | None = None, **_: Any
    ) -> np.ndarray:
        """Band 1 of a window, as a rasterio dataset answers; a window is required (a whole
        scene's mask is never made)."""
        if indexes != 1 or window is None:
            raise ValueError(
                f"{self.name}: a label mask reads band 1 of a window, not {indexes!r}/{window!r}"
            )
        mask = self.mask_window(
            int(window.row_off), int(window.col_off), int(window.height), int(window.width)
        )
        if out is None:
            return mask
        out[...] = mask
        return out

    def known_impacts(self) -> list[KnownObject]:
        """The labels as true impacts for whole-scene matching: a point is its centre with
        the footprint radius; polygons that overlap are one impact (as mask components),
        centred on their union's centroid with half its box's longer side as radius."""
        from tiling.synth import (
            KnownObject,
        )  # not at the top: tiling.synth imports tiling.io, which imports this

        impacts = [
            KnownObject(kind="impact", row=float(r), col=float(c), radius_px=float(rad))
            for r, c, rad in zip(self.rows.tolist(), self.cols.tolist(), self.radii.tolist(), strict=True)
        ]
        if len(self.polygons):
            import shapely
            from scipy.sparse import coo_matrix
            from scipy.sparse.csgraph import connected_components

            pairs = shapely.STRtree(self.polygons).query(self.polygons, predicate="intersects")
            n = len(self.polygons)
            graph = coo_matrix((np.ones(pairs.shape[1]), (pairs[0], pairs[1])), shape=(n, n))
            _, group = connected_components(graph, directed=False)
            for g in range(int(group.max()) + 1):
                union = shapely.union_all(self.polygons[group == g])
                c0, r0, c1, r1 = union.bounds
                centre = union.centroid
                impacts.append(KnownObject("impact", centre.y, centre.x, 0.5 * max(r1 - r0, c1 - c0)))
        return impacts

    def close(self) -> None:
        """Nothing to release (the catalog is in memory); here for dataset parity."""

    def __enter__(self) -> LabelMask:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
