"""An earlier image of a scene's ground: finding it, and reading it on the scene's grid.

**Finding it.** The earlier image of ``SCENES/NAME.<ext>`` is ``NAME_before.<ext>`` beside
it (any scene extension, any GDAL format, found through :func:`impacts.scenes.scene_file`),
or the row of a pairs file naming it (CSV ``scene,before``, paths relative to the file's
folder), for archives whose earlier images live elsewhere; a pairs file wins.

**Reading it.** The earlier image may be on any grid, at any resolution, in any CRS of the
same body. :func:`open_before` gives a view of it on the scene's grid: every window is read
through a ``WarpedVRT`` with the scene's CRS, transform and size (bilinear; the image's
no-data stays no-data), so only the source blocks under the window are read and the image
is never warped whole. The view's pixels are the scene's: the earlier image's stored values
become pipeline pixels (:mod:`tiling.pixels`), are converted to the scene's pixel type when
the two differ (the same share of the type's top value, so ``pixel / 255`` or ``pixel /
65535`` is unchanged), and every pixel the earlier image does not cover, or covers with
no-data, is the scene's no-data value.

**Registration offset.** An offset ``(rows, cols)`` in scene pixels says where the earlier
image's features lie relative to the scene's: a crater at scene pixel ``(r, c)`` appears at
``(r + rows, c + cols)`` of the uncorrected view. The view corrects it by shifting the VRT's
transform by the offset (``T' = T @ translation(cols, rows)``: view pixel ``(r, c)`` reads
the ground of scene pixel ``(r + rows, c + cols)``), sub-pixel offsets through the bilinear
resampling. An offset is one pair, or a :class:`tiling.registration.Registration`, whose
offset varies along the strip (:meth:`~tiling.registration.Registration.offset_at` at a
window's centre row).
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Collection, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.transform import Affine
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from impacts.errors import CorruptRasterError, SceneError, SceneNameError, SceneNotFoundError
from impacts.scenes import BEFORE_SUFFIX, check_scene_name, scene_file
from tiling.io import SceneInfo, open_image
from tiling.pixels import PixelMap

log = logging.getLogger(__name__)

#: The columns of a pairs file.
PAIRS_COLUMNS = ("scene", "before")
#: Warp memory per window read, in MB (GDAL's chunk buffer; the block cache is separate).
WARP_MEM_MB = 64
#: Warped views kept open per distinct offset (a drifting registration gives several).
VRT_CACHE = 8
_TOP = {"uint8": 255, "uint16": 65535}


class OffsetSource(Protocol):
    """Anything that gives the registration offset at a scene row (a ``Registration``)."""

    def offset_at(self, row: float) -> tuple[float, float]:
        """The offset ``(rows, cols)`` in scene pixels at scene row ``row``."""
        ...


def read_pairs(path: Path, scenes: Collection[str] | None = None) -> dict[str, Path]:
    """Read a pairs file: CSV with a header ``scene,before``, a row per scene with an earlier
    image (other columns ignored), ``before`` relative to the file's folder or absolute.

    Args:
        path: The pairs file.
        scenes: The scene names a row may name (None: any valid scene name).

    Returns:
        The earlier image of each scene named, absolute.

    Raises:
        SceneNotFoundError: The file does not exist.
        SceneError: A bad row (missing column or value, invalid or unknown scene, missing
            earlier image, scene already paired): one line naming the file, the line and the fix.
    """
    if not path.is_file():
        raise SceneNotFoundError(f"pairs file {path} not found; pass a CSV with columns scene,before")
    known = None if scenes is None else set(scenes)
    pairs: dict[str, Path] = {}
    lines: dict[str, int] = {}
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in PAIRS_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise SceneError(
                f"{path}: line 1: no column {' or '.join(missing)} (header {reader.fieldnames}); "
                f"the first line must be '{','.join(PAIRS_COLUMNS)}'"
            )
        for row in reader:
            where = f"{path}: line {reader.line_num}"
            scene, before = (str(row.get(c) or "").strip() for c in PAIRS_COLUMNS)
            if not scene or not before:
                raise SceneError(f"{where}: empty scene or before; give both, or remove the row")
            try:
                check_scene_name(scene)
            except SceneNameError as exc:
                raise SceneError(f"{where}: {exc}") from exc
            if known is not None and scene not in known:
                raise SceneError(
                    f"{where}: scene {scene!r} is not among the scenes; fix the name or remove the row"
                )
            if scene in pairs:
                raise SceneError(
                    f"{where}: scene {scene!r} is already paired on line {lines[scene]}; keep one row per scene"
                )
            image = Path(before) if Path(before).is_absolute() else path.parent / before
            if not image.is_file():
                raise SceneError(
                    f"{where}: earlier image {image} of {scene} not found; fix the path (relative to {path.parent}) or remove the row"
                )
            pairs[scene], lines[scene] = image.absolute(), reader.line_num
    return pairs


def before_path(image: Path, pairs: dict[str, Path] | None = None) -> Path | None:
    """The earlier image of a scene: its pairs-file row, else ``NAME_before.<ext>`` beside it.

    Args:
        image: The scene's image ``NAME.<ext>`` (its stem is the scene name).
        pairs: Rows of a pairs file (:func:`read_pairs`), if any.

    Returns:
        The earlier image's file (the label of a detached-label product), or None.

    Raises:
        SceneNameError: The stem is not a scene name.
        SceneError: Several ``NAME_before`` files that are not one product.
    """
    name = check_scene_name(image.stem)
    if pairs and name in pairs:
        return pairs[name]
    path = scene_file(image.parent, name, BEFORE_SUFFIX)
    return path if path.is_file() else None


def shifted_transform(transform: Affine, offset: tuple[float, float]) -> Affine:
    """The scene transform moved by a registration offset ``(rows, cols)`` in scene pixels:
    pixel ``(r, c)`` of the result is where pixel ``(r + rows, c + cols)`` of ``transform`` is."""
    rows, cols = offset
    return transform @ Affine.translation(cols, rows)


def _warp_nodata(pixels: PixelMap) -> tuple[float | None, float]:
    """``(source no-data for the warp, the view's fill)``: the stored no-data value; 0 for
    uint8/uint16 read as stored (0 is their pipeline no-data); NaN for floats, the type's
    minimum for integers, where a stretched product has none."""
    if pixels.source_nodata is not None:
        return pixels.source_nodata, pixels.source_nodata
    if not pixels.stretched:
        return pixels.nodata, pixels.nodata
    kind = np.dtype(pixels.source_dtype).kind
    return None, (math.nan if kind == "f" else float(np.iinfo(pixels.source_dtype).min))


class BeforeView:
    """An earlier image on a scene's grid, read window by window (see the module).

    ``read(1, window=, out=)`` as rasterio's, so :func:`tiling.io.read_window` reads it; the
    pixels have the scene's type and no-data value.
    """

    def __init__(
        self,
        source: Any,
        pixels: PixelMap,
        scene: SceneInfo,
        path: Path,
        offset: tuple[float, float] | OffsetSource = (0.0, 0.0),
    ) -> None:
        if scene.crs is None or source.crs is None:
            which = "the scene" if scene.crs is None else str(path)
            raise SceneError(
                f"{path}: {which} has no CRS, so the earlier image cannot be put on the scene grid of {scene.name}; assign it (gdal_edit -a_srs)"
            )
        self.name = str(path)
        self.height, self.width = scene.height, scene.width
        self.dtype, self.nodata = scene.dtype, scene.nodata
        self._source, self._scene, self._offset = source, scene, offset
        src_nodata, self._fill = _warp_nodata(pixels)
        self._src_nodata = src_nodata
        # The warped values' map: the view's fill is no-data on top of the stored no-data.
        self._pixels = replace(pixels, source_nodata=self._fill)
        self._vrts: dict[tuple[float, float], Any] = {}

    def offset_at(self, row: float) -> tuple[float, float]:
        """The registration offset applied at scene row ``row``."""
        if isinstance(self._offset, tuple):
            return self._offset
        return self._offset.offset_at(row)

    def _vrt(self, offset: tuple[float, float]) -> Any:
        key = (round(offset[0], 3), round(offset[1], 3))
        if key not in self._vrts:
            if len(self._vrts) >= VRT_CACHE:
                self._vrts.pop(next(iter(self._vrts))).close()
            try:
                self._vrts[key] = WarpedVRT(
                    self._source,
                    crs=self._scene.crs,
                    transform=shifted_transform(self._scene.transform, key),
                    width=self._scene.width,
                    height=self._scene.height,
                    resampling=Resampling.bilinear,
                    src_nodata=self._src_nodata,
                    nodata=self._fill,
                    warp_mem_limit=WARP_MEM_MB,
                )
            except (RasterioError, ValueError) as exc:
                raise SceneError(
                    f"{self.name}: cannot be warped onto the grid of scene {self._scene.name} ({exc}); "
                    "both must be in CRSs of the same body"
                ) from exc
        return self._vrts[key]

    def read(self, indexes: int = 1, window: Any = None, out: np.ndarray | None = None) -> np.ndarray:
        """Band 1 of a window of the scene grid, as scene pixels (into ``out`` when given),
        corrected by the view's offset at the window's centre row."""
        if window is None:
            raise ValueError("BeforeView reads windows only; pass window=")
        offset = self.offset_at(window.row_off + window.height / 2)
        return self.read_at(window.row_off, window.col_off, window.height, window.width, offset, out)

    def read_at(
        self,
        row: int,
        col: int,
        height: int,
        width: int,
        offset: tuple[float, float],
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """A window of the scene grid corrected by ``offset`` instead of the view's (registration
        measures against the uncorrected view, then refines)."""
        try:
            raw = np.asarray(self._vrt(offset).read(1, window=Window(col, row, width, height)))
        except RasterioError as exc:
            raise CorruptRasterError(
                f"{self.name}: window at row {row}, col {col} of {self._scene.name}'s grid cannot be decoded ({exc}); re-export the file"
            ) from exc
        return self._to_scene(raw, out)

    def _to_scene(self, raw: np.ndarray, out: np.ndarray | None) -> np.ndarray:
        valid = ~self._pixels.invalid(raw)
        mapped = self._pixels.apply(raw)
        result = np.empty(raw.shape, dtype=self.dtype) if out is None else out
        if mapped.dtype != np.dtype(self.dtype):
            top_in, top_out = _TOP[str(mapped.dtype)], _TOP[self.dtype]
            np.copyto(result, np.rint(mapped * (top_out / top_in)), casting="unsafe")
        else:
            np.copyto(result, mapped)
        # A valid earlier pixel never reads as the scene's no-data: nudge it one step inward.
        nodata = self.nodata
        clash = valid & (result == nodata)
        result[clash] = nodata + 1 if nodata < _TOP[self.dtype] else nodata - 1
        result[~valid] = nodata
        return result

    def close(self) -> None:
        """Close the warped views (the source is closed by :func:`open_before`)."""
        for vrt in self._vrts.values():
            vrt.close()
        self._vrts.clear()


@contextmanager
def open_before(
    path: Path,
    scene: SceneInfo,
    offset: tuple[float, float] | OffsetSource = (0.0, 0.0),
    threads: int = 1,
) -> Iterator[BeforeView]:
    """Open an earlier image as a view on a scene's grid (see the module).

    Args:
        path: The earlier image (any GDAL raster, one band, with a CRS).
        scene: The scene's grid and pixel type (:func:`tiling.io.open_image`).
        offset: The registration offset ``(rows, cols)`` in scene pixels, or a registration.
        threads: GDAL decoding threads.

    Yields:
        The view; read it with :func:`tiling.io.read_window`.

    Raises:
        SceneNotFoundError: The file does not exist.
        RasterFormatError: Several bands, complex pixels, no driver for the format.
        CorruptRasterError: The file cannot be opened.
        SceneError: The scene or the earlier image has no CRS, or they are of different bodies.
    """
    with ExitStack() as stack:
        source, info = stack.enter_context(open_image(path, threads, stored=True))
        assert info.pixels is not None
        view = BeforeView(source, info.pixels, scene, path, offset)
        stack.callback(view.close)
        yield view
