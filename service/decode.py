"""Decoding uploaded tiles (GeoTIFF, PNG, NumPy ``.npy``) safely.

The format is told by magic bytes, never by name or content type. The size checked against
the limit is the one the decoder will allocate, read from the decoder itself before it
decodes any pixel (Pillow's parsed size, not the first ``IHDR`` of the bytes, which a file
may contradict later; GDAL's raster and block sizes; numpy's parsed header), so a header
claiming an enormous image costs nothing. Only the pixel types the model takes are read:
anything else (zero-size, object, string, complex types) is refused before its payload.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from impacts.errors import TileError

TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NPY_MAGIC = b"\x93NUMPY"


@dataclass
class Tile:
    """A decoded single-band tile: pixels scaled to [0, 1] by ``scale``, and the
    georeference of a GeoTIFF upload (None otherwise)."""

    image: np.ndarray
    scale: float
    fmt: str
    crs: Any = None
    transform: Any = None


def _check_size(height: int, width: int, max_px: int) -> None:
    if height < 1 or width < 1:
        raise TileError(400, f"tile declares {height}x{width} px; upload a non-empty image")
    if max(height, width) > max_px:
        raise TileError(
            413, f"tile of {height}x{width} px exceeds the {max_px} px limit; cut it into smaller tiles"
        )


#: Pixel types a tile may have (any byte order): what ``_scale`` maps to [0, 1].
PIXEL_TYPES = frozenset(np.dtype(t) for t in ("uint8", "uint16", "float16", "float32", "float64"))


def _check_pixel_type(dtype: np.dtype[Any]) -> None:
    if dtype.newbyteorder("=") not in PIXEL_TYPES:
        raise TileError(
            422,
            f"pixel type {dtype.name} ({dtype.str}) is not supported; send uint8, uint16 or float values in [0, 1]",
        )


def _scale(image: np.ndarray) -> float:
    if image.dtype == np.uint8:
        return 255.0
    if image.dtype == np.uint16:
        return 65535.0
    if image.dtype.kind == "f":
        if np.isnan(image).any():
            raise TileError(422, "tile contains NaN values; replace them (e.g. by 0, the no-data value)")
        if image.min() < 0 or image.max() > 1:
            raise TileError(422, "a float tile must hold values in [0, 1]; send uint8 or uint16 otherwise")
        return 1.0
    raise TileError(422, f"pixel type {image.dtype} is not supported; send uint8, uint16 or float in [0, 1]")


def _tiff(data: bytes, max_px: int) -> Tile:
    import rasterio
    from rasterio.errors import RasterioError
    from rasterio.io import MemoryFile

    try:
        with (
            rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"),
            MemoryFile(data) as memory,
            memory.open() as ds,
        ):
            _check_size(ds.height, ds.width, max_px)
            # GDAL decodes whole blocks: a small raster may declare enormous tiles or strips.
            for block_h, block_w in ds.block_shapes:
                _check_size(block_h, block_w, max_px)
            if ds.count != 1:
                raise TileError(422, f"tile has {ds.count} bands; send a single-band image")
            if ds.dtypes[0] not in ("uint8", "uint16", "float32", "float64"):
                raise TileError(422, f"pixel type {ds.dtypes[0]} is not supported; send uint8 or uint16")
            image = ds.read(1)
            return Tile(image, _scale(image), "geotiff", ds.crs, ds.transform)
    except RasterioError as exc:
        raise TileError(
            400, f"the TIFF cannot be decoded ({exc}); the upload is truncated or corrupt"
        ) from exc


def _png(data: bytes, max_px: int) -> Tile:
    from PIL import Image

    if len(data) < 33 or data[12:16] != b"IHDR":
        raise TileError(400, "the PNG is truncated before its header; upload the whole file")
    width, height = struct.unpack(">II", data[16:24])
    _check_size(height, width, max_px)  # cheap first look; Pillow's own parse is checked below
    try:
        with Image.open(io.BytesIO(data), formats=["PNG"]) as img:
            # The size Pillow will allocate, which a later IHDR (or an animation frame) can
            # change: checked before any pixel is decoded.
            _check_size(img.height, img.width, max_px)
            if getattr(img, "n_frames", 1) != 1:
                raise TileError(422, "animated PNGs are not accepted; send a single grayscale image")
            if img.mode not in ("L", "I;16", "I;16B", "I"):
                raise TileError(
                    422, f"PNG mode {img.mode} has several bands or a palette; send a grayscale image"
                )
            img.load()
            image = np.asarray(img)
    except TileError:
        raise
    except Image.DecompressionBombError as exc:
        raise TileError(413, f"the PNG declares too many pixels ({exc}); cut it into smaller tiles") from exc
    except Exception as exc:  # Pillow raises many types for broken files
        raise TileError(
            400, f"the PNG cannot be decoded ({exc}); the upload is truncated or corrupt"
        ) from exc
    if image.shape != (img.height, img.width):
        raise TileError(400, "the PNG decoded to another size than it declares; the upload is corrupt")
    if image.dtype not in (np.uint8, np.uint16):
        image = image.astype(np.uint16)
    return Tile(image, _scale(image), "png")


def _npy(data: bytes, max_px: int) -> Tile:
    stream = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(stream)
        read_header = {
            (1, 0): np.lib.format.read_array_header_1_0,
            (2, 0): np.lib.format.read_array_header_2_0,
        }.get(version)
        if read_header is None:
            raise ValueError(f"unsupported .npy version {version}")
        shape, fortran, dtype = read_header(stream)  # the header only: no pixel read yet
    except Exception as exc:  # numpy's header parser raises many types for broken headers
        raise TileError(
            400, f"the .npy header cannot be read ({exc}); upload a file written by numpy.save"
        ) from exc
    _check_pixel_type(dtype)  # also refuses object, string and zero-size types
    if len(shape) == 3 and shape[2] == 1:
        shape = shape[:2]
    if len(shape) != 2:
        raise TileError(422, f"array of shape {shape}; send a single-band (height, width) array")
    _check_size(shape[0], shape[1], max_px)
    count = int(np.prod(shape))
    payload = data[stream.tell() :]
    if len(payload) < count * dtype.itemsize:
        raise TileError(
            400,
            f"the .npy holds {len(payload)} bytes of the {count * dtype.itemsize} its header declares; the upload is truncated",
        )
    image = np.frombuffer(payload, dtype=dtype, count=count).reshape(shape, order="F" if fortran else "C")
    image = np.ascontiguousarray(image.astype(image.dtype.newbyteorder("=")))
    return Tile(image, _scale(image), "npy")


def decode_tile(data: bytes, max_px: int) -> Tile:
    """Decode an upload.

    Raises:
        TileError: Empty (400), unknown format (415), too large (413), several bands,
            unsupported type or NaNs (422), truncated or corrupt (400).
    """
    if not data:
        raise TileError(400, "the upload is empty (0 bytes); send a GeoTIFF, PNG or .npy tile")
    if data.startswith(TIFF_MAGIC):
        return _tiff(data, max_px)
    if data.startswith(PNG_MAGIC):
        return _png(data, max_px)
    if data.startswith(NPY_MAGIC):
        return _npy(data, max_px)
    raise TileError(
        415,
        "not a supported image (its first bytes are no TIFF, PNG or .npy signature); send a GeoTIFF, PNG or .npy tile",
    )
