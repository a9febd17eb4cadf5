"""How a band's stored values become the pipeline's pixels: uint8 or uint16, one no-data value.

The tiler and inference divide uint8 pixels by 255 and uint16 pixels by 65535, and a patch
set holds one pixel type, so every scene is read as one of these, whatever its format:

- **uint8 / uint16 with no scaling, or a positive one** (GeoTIFF, ISIS3 and PDS3/PDS4 DNs,
  lossless JPEG2000): read as stored, the stored no-data value kept (0 when there is none).
  A positive scaling factor and offset keep the order and spacing of values, so the DN is the
  model's input, exactly as for a GeoTIFF of the same DN; the physical range is reported.
- **every other product** (signed integers, float32/64, a negative scaling factor): the
  physical value ``v = raw * scale + offset`` is mapped linearly onto uint16,
  ``u = 1 + rint((v - lo) / (hi - lo) * 65534)`` clipped to ``1..65535``, and ``0`` is
  no-data. ``[lo, hi]`` is the range of valid physical values in a bounded sample of the
  scene (:func:`sample_windows`: at most 16 x 16 windows of 64 x 64 pixels, the whole scene
  when it is smaller), so memory never grows with scene size and the same stored values
  always give the same pixels, in any format.

Invalid pixels, in either case: the band's no-data value, NaN and infinities, and for ISIS
cubes (drivers ISIS3, ISIS2) the special pixels NULL, LRS, LIS, HIS and HRS, i.e. every raw
value outside the cube type's valid range (:data:`ISIS_VALID`).

Masks: any non-zero value is an impact, except the mask's own no-data value, non-finite
values and, for signed or float ISIS masks, special pixels (all background).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from impacts.errors import RasterFormatError

#: Most negative valid ISIS 32-bit real (0xFF7FFFFA); NULL, LRS, LIS, HIS, HRS lie below.
ISIS_VALID_MIN4 = float(np.frombuffer(bytes.fromhex("faff7fff"), dtype="<f4")[0])
#: Valid raw values of ISIS cubes per pixel type; the rest are special pixels.
ISIS_VALID: dict[str, tuple[float, float]] = {
    "uint8": (1, 254),
    "uint16": (3, 65522),
    "int16": (-32752, 32767),
    "float32": (ISIS_VALID_MIN4, float(np.finfo(np.float32).max)),
}
ISIS_DRIVERS = ("ISIS3", "ISIS2")
#: The pixel type, no-data value and top value of mapped (stretched) products.
STRETCH_DTYPE = "uint16"
STRETCH_NODATA = 0
STRETCH_TOP = 65535
#: Bounded sample for the value range: windows per axis and their side.
SAMPLE_GRID = 16
SAMPLE_PX = 64

#: Reads a window ``(row, col, height, width)`` of band 1 as stored.
ReadRaw = Callable[[int, int, int, int], np.ndarray]


@dataclass(frozen=True)
class PixelMap:
    """How one band's stored values become pipeline pixels (see the module).

    Attributes:
        source_dtype: The stored pixel type.
        dtype: The pipeline's pixel type (``uint8`` or ``uint16``).
        nodata: The pipeline's no-data value.
        source_nodata: The stored no-data value, if any.
        valid_range: Raw values outside it are special pixels (ISIS cubes), if any.
        scale: Physical value per raw unit (PDS ``SCALING_FACTOR``, ISIS ``Multiplier``).
        offset: Physical value at raw 0 (PDS ``OFFSET``, ISIS ``Base``).
        value_range: The physical ``[lo, hi]`` mapped onto ``1..65535`` (stretched products),
            or the physical range of the stored type (read as stored).
        stretched: Whether values are mapped onto uint16 (otherwise read as stored).
    """

    source_dtype: str
    dtype: str
    nodata: float
    source_nodata: float | None
    valid_range: tuple[float, float] | None
    scale: float
    offset: float
    value_range: tuple[float, float]
    stretched: bool

    @property
    def identity(self) -> bool:
        """Whether pixels are the stored values unchanged (nothing to do on reads)."""
        return not self.stretched and self.valid_range is None

    def invalid(self, raw: np.ndarray) -> np.ndarray:
        """Which raw values are no-data: the stored no-data value, non-finite, special."""
        bad = np.zeros(raw.shape, dtype=bool)
        if self.source_nodata is not None:
            bad |= raw == self.source_nodata
        if raw.dtype.kind == "f":
            bad |= ~np.isfinite(raw)
        if self.valid_range is not None:
            lo, hi = self.valid_range
            bad |= (raw < lo) | (raw > hi)
        return bad

    def apply(self, raw: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Pipeline pixels of raw values (into ``out`` when given)."""
        result = np.empty(raw.shape, dtype=self.dtype) if out is None else out
        bad = self.invalid(raw)
        if not self.stretched:
            np.copyto(result, raw, casting="unsafe")
        else:
            lo, hi = self.value_range
            gain = (STRETCH_TOP - 1) / (hi - lo) if hi > lo else 0.0
            with np.errstate(invalid="ignore", over="ignore"):
                mapped = np.rint((raw.astype(np.float64) * self.scale + self.offset - lo) * gain) + 1
                np.clip(mapped, 1, STRETCH_TOP, out=mapped)
            mapped[bad] = STRETCH_NODATA  # NaN clips to NaN: set before the cast
            np.copyto(result, mapped, casting="unsafe")
            return result
        result[bad] = self.nodata
        return result


def sample_windows(height: int, width: int) -> list[tuple[int, int, int, int]]:
    """Windows ``(row, col, height, width)`` of the bounded value-range sample: the whole
    scene in ``SAMPLE_PX`` tiles when it fits ``SAMPLE_GRID`` of them per axis, otherwise
    ``SAMPLE_GRID`` evenly spread windows per axis."""

    def spans(length: int) -> list[tuple[int, int]]:
        if length <= SAMPLE_GRID * SAMPLE_PX:
            return [(s, min(SAMPLE_PX, length - s)) for s in range(0, length, SAMPLE_PX)]
        step = (length - SAMPLE_PX) / (SAMPLE_GRID - 1)
        return [(round(i * step), SAMPLE_PX) for i in range(SAMPLE_GRID)]

    return [(r, c, h, w) for r, h in spans(height) for c, w in spans(width)]


def _physical(lo: float, hi: float, scale: float, offset: float) -> tuple[float, float]:
    a, b = lo * scale + offset, hi * scale + offset
    return (min(a, b), max(a, b))


def pixel_map(
    dtype: str,
    nodata: float | None,
    scale: float | None,
    offset: float | None,
    driver: str,
    height: int,
    width: int,
    read: ReadRaw,
    path: object,
) -> PixelMap:
    """The pixel map of a band (see the module).

    Args:
        dtype: The stored pixel type.
        nodata: The stored no-data value, if any.
        scale: The band's scale (None: 1).
        offset: The band's offset (None: 0).
        driver: The GDAL driver that opened it (ISIS special pixels for ``ISIS3``/``ISIS2``).
        height: Rows of the band.
        width: Columns of the band.
        read: Reads a window as stored (used only for stretched products, in bounded windows).
        path: The file, for messages.

    Returns:
        The map.

    Raises:
        RasterFormatError: Complex or non-numeric pixels.
    """
    kind = np.dtype(dtype).kind
    if kind not in "uif":
        raise RasterFormatError(
            f"{path}: pixel type {dtype} cannot be an image; extract a real band, e.g. gdal_translate -ot Float32"
        )
    scale = 1.0 if scale is None else float(scale)
    offset = 0.0 if offset is None else float(offset)
    valid_range = ISIS_VALID.get(dtype) if driver in ISIS_DRIVERS else None
    if dtype in ("uint8", "uint16") and scale > 0:
        info = np.iinfo(dtype)
        return PixelMap(
            source_dtype=dtype,
            dtype=dtype,
            nodata=float(nodata) if nodata is not None else 0.0,
            source_nodata=nodata,
            valid_range=valid_range,
            scale=scale,
            offset=offset,
            value_range=_physical(info.min, info.max, scale, offset),
            stretched=False,
        )
    probe = PixelMap(
        dtype, STRETCH_DTYPE, STRETCH_NODATA, nodata, valid_range, scale, offset, (0.0, 1.0), True
    )
    lo, hi = np.inf, -np.inf
    for row, col, h, w in sample_windows(height, width):
        raw = read(row, col, h, w)
        good = raw[~probe.invalid(raw)]
        if good.size:
            lo, hi = min(lo, float(good.min())), max(hi, float(good.max()))
    value_range = _physical(lo, hi, scale, offset) if lo <= hi else (0.0, 1.0)
    return PixelMap(
        dtype, STRETCH_DTYPE, STRETCH_NODATA, nodata, valid_range, scale, offset, value_range, True
    )


def mask_impacts(
    raw: np.ndarray, nodata: float | None, valid_range: tuple[float, float] | None
) -> np.ndarray:
    """Impact pixels (uint8 0/1) of a mask window: non-zero, and neither the mask's no-data
    value, non-finite nor (``valid_range`` given) a special pixel."""
    impact = raw != 0
    if nodata is not None:
        impact &= raw != nodata
    if raw.dtype.kind == "f":
        impact &= np.isfinite(raw)
    if valid_range is not None:
        impact &= (raw >= valid_range[0]) & (raw <= valid_range[1])
    return impact.astype(np.uint8)


def mask_valid_range(dtype: str, driver: str) -> tuple[float, float] | None:
    """Special pixels of a mask: only in signed or float ISIS masks (in uint8/uint16 ones the
    saturation values 255/65535 usually mean "impact")."""
    return ISIS_VALID.get(dtype) if driver in ISIS_DRIVERS and np.dtype(dtype).kind in "if" else None


class MappedDataset:
    """An open dataset whose band-1 reads return pipeline pixels (``read(1, window=, out=)``
    as rasterio's); every other attribute is the dataset's."""

    def __init__(self, ds: Any, convert: Callable[[np.ndarray, np.ndarray | None], np.ndarray]) -> None:
        self._ds = ds
        self._convert = convert

    def read(self, indexes: int = 1, window: Any = None, out: np.ndarray | None = None) -> np.ndarray:
        """Band ``indexes`` of ``window``, converted (into ``out`` when given)."""
        return self._convert(np.asarray(self._ds.read(indexes, window=window)), out)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ds, name)
