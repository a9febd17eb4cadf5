"""Raster I/O: the only module that opens rasters.

Finding scenes in a folder, opening and validating image/mask pairs, windowed reads and
window-by-window GeoTIFF writing, all under a bounded GDAL block cache so memory does not
grow with scene size.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.errors import RasterioError
from rasterio.transform import Affine
from rasterio.windows import Window

from impacts.atomic import atomic_path
from impacts.errors import (
    CorruptRasterError,
    GridMismatchError,
    MaskMissingError,
    RasterFormatError,
    SceneNotFoundError,
)
from impacts.scenes import MASK_SUFFIX, ROLE_SUFFIXES, RULE, SCENE_EXT, scene_file, scene_of

log = logging.getLogger(__name__)

SUPPORTED_DTYPES = ("uint8", "uint16")
#: GDAL block cache in MB: enough for a stripe of blocks, small enough to keep RSS flat.
GDAL_CACHE_MB = 128


@contextmanager
def gdal_env(threads: int = 1) -> Iterator[None]:
    """GDAL settings for every raster access: bounded block cache, no sidecar probing, and
    ``threads`` decoding threads for reads that span several blocks (a stripe)."""
    with rasterio.Env(
        GDAL_CACHEMAX=GDAL_CACHE_MB,
        GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR",
        GDAL_NUM_THREADS=str(max(1, threads)),
    ):
        yield


@dataclass(frozen=True)
class SceneFiles:
    """An image path and its mask path (None when the mask is missing)."""

    name: str
    image: Path
    mask: Path | None


@dataclass(frozen=True)
class SceneInfo:
    """Grid and format of an opened scene."""

    name: str
    height: int
    width: int
    dtype: str
    nodata: float
    crs: CRS | None
    transform: Affine
    block_shape: tuple[int, int]


def find_scenes(folder: Path) -> list[SceneFiles]:
    """List the scenes of a folder: every ``NAME.tif`` with its ``NAME_mask.tif``.

    Args:
        folder: Folder holding the scenes.

    Returns:
        Scenes sorted by name; ``mask`` is None where the mask file is missing.

    Raises:
        SceneNotFoundError: The folder does not exist or holds no ``.tif`` scene.
    """
    if not folder.is_dir():
        raise SceneNotFoundError(
            f"scene folder {folder} does not exist; pass the folder that holds NAME.tif and NAME_mask.tif files"
        )
    scenes = []
    for image in sorted(folder.glob(f"*{SCENE_EXT}")):
        name = scene_of(image)
        if name is None:  # a mask, a probability map, or a name that is no scene name
            if not image.stem.endswith(ROLE_SUFFIXES):
                log.warning(
                    "%s skipped: %r is not a scene name (%s); rename the file", image, image.stem, RULE
                )
            continue
        mask = scene_file(folder, name, MASK_SUFFIX)
        scenes.append(SceneFiles(name, image, mask if mask.is_file() else None))
    if not scenes:
        raise SceneNotFoundError(
            f"scene folder {folder} holds no NAME.tif scene; generate some with `impacts synth --out {folder}`"
        )
    return scenes


def _open(path: Path) -> Any:
    try:
        return rasterio.open(path)
    except RasterioError as exc:
        raise CorruptRasterError(
            f"{path}: cannot be opened as a raster ({exc}); re-export or re-download the file"
        ) from exc


def _check_single_band(ds: Any, path: Path, what: str) -> None:
    if ds.count != 1:
        raise RasterFormatError(
            f"{path}: {what} has {ds.count} bands, expected 1; extract the band to use, e.g. gdal_translate -b 1"
        )


def _image_info(image: Any, path: Path, name: str) -> SceneInfo:
    """Check that a scene image is single-band uint8/uint16 and describe its grid."""
    _check_single_band(image, path, "image")
    dtype = image.dtypes[0]
    if dtype not in SUPPORTED_DTYPES:
        raise RasterFormatError(
            f"{path}: pixel type {dtype}, expected uint8 or uint16; rescale it, e.g. gdal_translate -ot Byte -scale"
        )
    return SceneInfo(
        name=name,
        height=image.height,
        width=image.width,
        dtype=dtype,
        nodata=float(image.nodata) if image.nodata is not None else 0.0,
        crs=image.crs,
        transform=image.transform,
        block_shape=tuple(image.block_shapes[0]),
    )


@contextmanager
def open_scene(files: SceneFiles, threads: int = 1) -> Iterator[tuple[Any, Any, SceneInfo]]:
    """Open and validate an image/mask pair.

    Args:
        files: The scene's paths.
        threads: GDAL decoding threads for multi-block reads.

    Yields:
        ``(image_dataset, mask_dataset, info)``.

    Raises:
        MaskMissingError: No mask file.
        RasterFormatError: Several bands, or an image type other than uint8/uint16.
        GridMismatchError: The mask's size, transform or CRS differ from the image's.
        CorruptRasterError: A file cannot be opened.
    """
    if files.mask is None:
        raise MaskMissingError(
            f"{files.image}: no mask {files.name}{MASK_SUFFIX}.tif beside it; add the mask (0 = background, non-zero = impact) or move the scene out of the folder"
        )
    with gdal_env(threads):
        image = _open(files.image)
        try:
            mask = _open(files.mask)
            try:
                info = _image_info(image, files.image, files.name)
                _check_single_band(mask, files.mask, "mask")
                if (mask.height, mask.width) != (image.height, image.width):
                    raise GridMismatchError(
                        f"{files.mask}: {mask.height}x{mask.width} px but the image is {image.height}x{image.width}; resample the mask onto the image grid"
                    )
                if not mask.transform.almost_equals(image.transform) or mask.crs != image.crs:
                    raise GridMismatchError(
                        f"{files.mask}: georeference differs from {files.image.name}; warp the mask onto the image grid (gdalwarp -te/-tr from the image)"
                    )
                yield image, mask, info
            finally:
                mask.close()
        finally:
            image.close()


@contextmanager
def open_image(path: Path, threads: int = 1) -> Iterator[tuple[Any, SceneInfo]]:
    """Open and validate a single scene image (no mask needed), e.g. for prediction.

    Raises:
        SceneNotFoundError: The file does not exist.
        RasterFormatError: Several bands, or a type other than uint8/uint16.
        CorruptRasterError: The file cannot be opened.
    """
    if not path.is_file():
        raise SceneNotFoundError(f"{path} not found; pass a NAME.tif scene or a folder of them")
    with gdal_env(threads):
        image = _open(path)
        try:
            yield image, _image_info(image, path, path.stem)
        finally:
            image.close()


def read_window(
    ds: Any, row: int, col: int, height: int, width: int, out: np.ndarray | None = None
) -> np.ndarray:
    """Read band 1 of a window (into ``out`` when given, which saves a copy); a decoding
    failure becomes a CorruptRasterError naming the file."""
    try:
        return np.asarray(ds.read(1, window=Window(col, row, width, height), out=out))
    except RasterioError as exc:
        raise CorruptRasterError(
            f"{ds.name}: window at row {row}, col {col} cannot be decoded ({exc}); the file is truncated or corrupt, re-export it"
        ) from exc


def geotiff_profile(
    height: int,
    width: int,
    dtype: str,
    crs: CRS | None,
    transform: Affine,
    nodata: float | None,
    block_px: int = 256,
    sparse: bool = False,
) -> dict[str, Any]:
    """Profile of an internally tiled, deflate-compressed single-band GeoTIFF.

    ``sparse`` omits blocks that are all zero (GDAL's SPARSE_OK): right for masks, where
    nearly every block is empty and reading an omitted block costs no decoding.
    """
    return {
        "SPARSE_OK": "TRUE" if sparse else "FALSE",
        "driver": "GTiff",
        "height": height,
        "width": width,
        "count": 1,
        "dtype": dtype,
        "crs": crs,
        "transform": transform,
        "nodata": nodata,
        "tiled": True,
        "blockxsize": block_px,
        "blockysize": block_px,
        "compress": "deflate",
        "predictor": 2,
        "interleave": "band",
        "BIGTIFF": "IF_SAFER",
    }


@contextmanager
def open_geotiff_writer(path: Path, profile: dict[str, Any]) -> Iterator[Any]:
    """Open a GeoTIFF for window-by-window writing under the bounded GDAL cache.

    The file is written as ``path.partial``, fsynced and renamed on success
    (:func:`impacts.atomic.atomic_path`), so an interrupted write never leaves a file that
    looks complete; a killed run's ``.partial`` is overwritten by the next one.
    """
    with (
        atomic_path(path, unique=False) as partial,
        gdal_env(),
        rasterio.open(partial, "w", **profile) as dst,
    ):
        yield dst


def write_window(ds: Any, array: np.ndarray, row: int, col: int) -> None:
    """Write ``array`` into band 1 at ``(row, col)``."""
    height, width = array.shape
    ds.write(array, 1, window=Window(col, row, width, height))
