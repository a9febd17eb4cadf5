"""Raster I/O: the only module that opens rasters.

Finding scenes in a folder (any GDAL raster: GeoTIFF, ISIS3, PDS3, PDS4, JPEG2000; see
:mod:`tiling.formats`), opening and validating image/mask pairs, windowed reads that return
the pipeline's uint8/uint16 pixels (:mod:`tiling.pixels`: no-data, ISIS special pixels,
scaling) and window-by-window GeoTIFF writing, all under a bounded GDAL block cache so memory
does not grow with scene size.
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

from impacts.atomic import PARTIAL_SUFFIX, atomic_path
from impacts.errors import (
    CorruptRasterError,
    GridMismatchError,
    MaskMissingError,
    RasterFormatError,
    SceneError,
    SceneNotFoundError,
)
from impacts.scenes import MASK_SUFFIX, ROLE_SUFFIXES, RULE, scene_extensions, scene_of
from tiling import formats
from tiling.labels import is_label_catalog, open_catalog_on, scene_labels
from tiling.pixels import MappedDataset, PixelMap, mask_impacts, mask_valid_range, pixel_map

log = logging.getLogger(__name__)

#: The pixel types the pipeline works on; other products are mapped (tiling/pixels.py).
SUPPORTED_DTYPES = ("uint8", "uint16")
#: GDAL block cache in MB: enough for a stripe of blocks, small enough to keep RSS flat.
GDAL_CACHE_MB = 128


@contextmanager
def gdal_env(threads: int = 1) -> Iterator[None]:
    """GDAL settings for every raster access: bounded block cache, no folder listing on open,
    and ``threads`` decoding threads for reads that span several blocks (a stripe)."""
    with rasterio.Env(
        GDAL_CACHEMAX=GDAL_CACHE_MB,
        GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR",
        GDAL_NUM_THREADS=str(max(1, threads)),
    ):
        yield


#: Extensions whose sidecars are never read (GeoTIFFs carry everything inside).
_NO_SIDECAR_EXTENSIONS = (".tif", ".tiff")


@dataclass(frozen=True)
class SceneFiles:
    """An image path and its labels' path: a mask raster or a label catalog
    (``NAME_labels.geojson|gpkg|csv``, :mod:`tiling.labels`); None when there is neither."""

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
    #: How stored values became these pixels (None: read as stored, e.g. built by hand).
    pixels: PixelMap | None = None
    #: The GDAL driver that read the file (``GTiff``, ``ISIS3``, ``PDS``, ``PDS4``, ...).
    driver: str = "GTiff"


def find_scenes(folder: Path) -> list[SceneFiles]:
    """List the scenes of a folder: every ``NAME.<ext>`` (an extension of
    :func:`impacts.scenes.scene_extensions`, any case) with its ``NAME_mask.<ext>``.

    A detached label and its data file are one scene, opened through the label. A scene that
    cannot be used is logged in one line and left out, and the others go on: two files of one
    name that are not one product (remove or rename one), a label whose data file is missing,
    a format the installed GDAL has no driver for.

    Args:
        folder: Folder holding the scenes.

    Returns:
        Scenes sorted by name; ``mask`` is the mask raster, else the label catalog
        (:func:`tiling.labels.scene_labels`), else None.

    Raises:
        SceneNotFoundError: The folder does not exist or holds no usable scene.
    """
    if not folder.is_dir():
        raise SceneNotFoundError(
            f"scene folder {folder} does not exist; pass the folder that holds NAME.tif and NAME_mask.tif files"
        )
    groups, problems = formats.scene_groups(folder)
    for problem in problems:
        log.error("%s", problem)
    scenes = []
    for stem, paths in sorted(groups.items()):
        name = scene_of(paths[0])
        if name is None:  # a mask, a probability map, or a name that is no scene name
            if not stem.endswith(ROLE_SUFFIXES):
                log.warning("%s skipped: %r is not a scene name (%s); rename the file", paths[0], stem, RULE)
            continue
        try:
            image = formats.pick_product(paths)
            masks = groups.get(f"{name}{MASK_SUFFIX}")
            mask = formats.pick_product(masks) if masks else None
        except SceneError as exc:
            log.error("scene %s skipped: %s", name, exc)
            continue
        scenes.append(SceneFiles(name, image, scene_labels(folder, name, mask)))
    if not scenes:
        raise SceneNotFoundError(
            f"scene folder {folder} holds no usable scene ({' '.join(scene_extensions())}); "
            f"generate some with `impacts synth --out {folder}`"
        )
    return scenes


def _open(path: Path) -> Any:
    formats.check_readable(path)
    # A JPEG2000's no-data value lives in its .aux.xml sidecar: let GDAL look for sidecars
    # (by name, still without listing the folder) for every format but GeoTIFF.
    sidecars = "EMPTY_DIR" if path.suffix.lower() in _NO_SIDECAR_EXTENSIONS else "TRUE"
    try:
        with rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN=sidecars):
            return rasterio.open(path)
    except RasterioError as exc:
        if "not recognized as" in str(exc) or "not recognised as" in str(exc):
            raise RasterFormatError(
                f"{path}: GDAL {rasterio.__gdal_version__} does not read it as a {formats.format_name(path)} "
                f"({exc}); check the file, or convert it to GeoTIFF (gdal_translate -of GTiff)"
            ) from exc
        raise CorruptRasterError(
            f"{path}: cannot be opened as a raster ({exc}); re-export or re-download the file"
        ) from exc


def _check_single_band(ds: Any, path: Path, what: str) -> None:
    if ds.count != 1:
        raise RasterFormatError(
            f"{path}: {what} has {ds.count} bands, expected 1; extract the band to use, e.g. gdal_translate -b 1"
        )


def _image_info(image: Any, path: Path, name: str) -> tuple[Any, SceneInfo]:
    """Check that a scene image is single-band, describe its grid and how its values become
    uint8/uint16 pixels (:func:`tiling.pixels.pixel_map`); the dataset to read pixels from is
    the image itself when they are its stored values."""
    _check_single_band(image, path, "image")
    pixels = pixel_map(
        image.dtypes[0],
        image.nodata,
        image.scales[0],
        image.offsets[0],
        image.driver,
        image.height,
        image.width,
        lambda row, col, h, w: np.asarray(image.read(1, window=Window(col, row, w, h))),
        path,
    )
    if pixels.stretched:
        log.info(
            "%s: %s %s values %.6g..%.6g mapped onto uint16 1..65535 (0 = no-data)",
            path,
            image.driver,
            pixels.source_dtype,
            *pixels.value_range,
        )
    info = SceneInfo(
        name=name,
        height=image.height,
        width=image.width,
        dtype=pixels.dtype,
        nodata=pixels.nodata,
        crs=image.crs,
        transform=image.transform,
        block_shape=tuple(image.block_shapes[0]),
        pixels=pixels,
        driver=image.driver,
    )
    return (image if pixels.identity else MappedDataset(image, pixels.apply)), info


def _mask_reader(mask: Any) -> Any:
    """The mask dataset, or a view of it reading 0/1 impacts where its stored values need
    interpreting (a non-zero no-data value, float or signed ISIS pixels; see
    :mod:`tiling.pixels`)."""
    dtype, nodata = mask.dtypes[0], mask.nodata
    valid_range = mask_valid_range(dtype, mask.driver)
    if np.dtype(dtype).kind == "u" and not nodata and valid_range is None:
        return mask
    return MappedDataset(mask, lambda raw, out: mask_impacts(raw, nodata, valid_range))


@contextmanager
def open_scene(files: SceneFiles, threads: int = 1) -> Iterator[tuple[Any, Any, SceneInfo]]:
    """Open and validate an image/mask pair.

    Args:
        files: The scene's paths.
        threads: GDAL decoding threads for multi-block reads.

    Yields:
        ``(image_dataset, mask_dataset, info)``: read them with :func:`read_window`, which
        gives the image's uint8/uint16 pixels (``info.dtype``, ``info.nodata``) and the mask.

    Raises:
        MaskMissingError: No mask file.
        RasterFormatError: Several bands, complex pixels, or no GDAL driver for the format.
        GridMismatchError: The mask's size, transform or CRS differ from the image's.
        CorruptRasterError: A file cannot be opened.
        SceneNotFoundError: A data file a label names is missing.
    """
    if files.mask is None:
        raise MaskMissingError(
            f"{files.image}: no mask {files.name}{MASK_SUFFIX}{files.image.suffix} (or another scene extension) beside it; add the mask (0 = background, non-zero = impact) or a catalog {files.name}_labels.geojson|gpkg|csv, or move the scene out of the folder"
        )
    with gdal_env(threads):
        image = _open(files.image)
        try:
            mask = open_catalog_on(files.mask, image) if is_label_catalog(files.mask) else _open(files.mask)
            try:
                reader, info = _image_info(image, files.image, files.name)
                _check_single_band(mask, files.mask, "mask")
                if (mask.height, mask.width) != (image.height, image.width):
                    raise GridMismatchError(
                        f"{files.mask}: {mask.height}x{mask.width} px but the image is {image.height}x{image.width}; resample the mask onto the image grid"
                    )
                if not mask.transform.almost_equals(image.transform) or mask.crs != image.crs:
                    raise GridMismatchError(
                        f"{files.mask}: georeference differs from {files.image.name}; warp the mask onto the image grid (gdalwarp -te/-tr from the image)"
                    )
                yield reader, _mask_reader(mask), info
            finally:
                mask.close()
        finally:
            image.close()


@contextmanager
def open_image(path: Path, threads: int = 1, stored: bool = False) -> Iterator[tuple[Any, SceneInfo]]:
    """Open and validate a single scene image (no mask needed), e.g. for prediction.

    ``stored=True`` yields the dataset itself, whose reads are the stored values
    (``info.pixels`` maps them), for a GDAL view built over it (the warped view of an earlier
    image, :mod:`tiling.pairs`).

    Raises:
        SceneNotFoundError: The file, or a data file its label names, does not exist.
        RasterFormatError: Several bands, complex pixels, or no GDAL driver for the format.
        CorruptRasterError: The file cannot be opened.
    """
    if not path.is_file():
        raise SceneNotFoundError(f"{path} not found; pass a NAME.tif scene or a folder of them")
    with gdal_env(threads):
        image = _open(path)
        try:
            reader, info = _image_info(image, path, path.stem)
            yield (image if stored else reader), info
        finally:
            image.close()


def read_window(
    ds: Any, row: int, col: int, height: int, width: int, out: np.ndarray | None = None
) -> np.ndarray:
    """Read band 1 of a window (into ``out`` when given, which saves a copy): a scene's
    pixels as :func:`open_image`/:func:`open_scene` describe them; a decoding failure becomes
    a CorruptRasterError naming the file."""
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


@contextmanager
def open_cog_writer(
    path: Path, profile: dict[str, Any], overview_resampling: str = "average"
) -> Iterator[Any]:
    """Write a Cloud-Optimized GeoTIFF window by window, in bounded memory.

    The windows go to an internally tiled GeoTIFF beside ``path`` (``NAME.stripes.partial``);
    when the block ends, GDAL's COG driver builds the overviews (block by block, from that
    file) and writes the COG (tiles and overviews inside, in the profile's CRS, band scale
    and offset kept) as ``path.partial``, which is fsynced and renamed onto ``path``
    (:func:`impacts.atomic.atomic_path`). The intermediate file is removed whatever happens.

    Args:
        path: The final ``.tif``.
        profile: A :func:`geotiff_profile` (its block size becomes the COG's).
        overview_resampling: GDAL resampling of the overviews (``average`` for
            probabilities, ``nearest`` for classes).

    Yields:
        The dataset to write into (set ``scales`` and tags on it; they are copied).
    """
    import rasterio.shutil

    stripes = path.with_name(path.name + ".stripes" + PARTIAL_SUFFIX)
    try:
        with gdal_env(), rasterio.open(stripes, "w", **profile) as dst:
            yield dst
        with (
            atomic_path(path, unique=False) as partial,
            gdal_env(),
            rasterio.open(stripes) as src,
        ):
            rasterio.shutil.copy(
                src,
                partial,
                driver="COG",
                BLOCKSIZE=str(profile.get("blockxsize", 256)),
                COMPRESS=str(profile.get("compress", "deflate")).upper(),
                PREDICTOR="YES" if profile.get("predictor") else "NO",
                OVERVIEWS="AUTO",
                OVERVIEW_RESAMPLING=overview_resampling.upper(),
                BIGTIFF="IF_SAFER",
            )
    finally:
        stripes.unlink(missing_ok=True)
