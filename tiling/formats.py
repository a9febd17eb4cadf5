"""Planetary raster formats on disk: which GDAL driver reads an extension, which data files a
detached label names, and which files of a scenes folder make up one product.

Nothing here opens a raster (that is :mod:`tiling.io`); labels are read as text, at most
:data:`LABEL_MAX_BYTES` of each. A PDS3 or ISIS3 label names its data file with a pointer
(``^IMAGE = "NAME.IMG"``, ``^IMAGE = ("NAME.IMG", 3)``, ``^Core = NAME.cub``), a PDS4 label
with ``<file_name>`` in its ``File_Area_Observational``. A data file named by a label is part
of that label's product, never a scene of its own.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path

import rasterio

from impacts.errors import RasterFormatError, SceneError, SceneNotFoundError
from impacts.scenes import LABEL_EXTENSIONS, product_file, scene_extensions

#: GDAL drivers that read each scene extension (any one of them installed is enough).
DRIVERS_BY_EXT: dict[str, tuple[str, ...]] = {
    ".tif": ("GTiff",),
    ".tiff": ("GTiff",),
    ".cub": ("ISIS3", "ISIS2"),
    ".img": ("PDS", "ISIS3", "ISIS2", "VICAR", "PDS4", "ENVI"),
    ".lbl": ("PDS", "ISIS3", "ISIS2", "VICAR"),
    ".xml": ("PDS4",),
    ".jp2": ("JP2OpenJPEG", "JP2KAK", "JP2ECW", "JP2MrSID", "JPEG2000"),
}
#: What a file of each extension is, for messages.
FORMAT_NAMES = {
    ".tif": "GeoTIFF",
    ".tiff": "GeoTIFF",
    ".cub": "ISIS3 cube",
    ".img": "PDS3 image",
    ".lbl": "PDS3/ISIS3 detached label",
    ".xml": "PDS4 label",
    ".jp2": "JPEG2000 image",
}
LABEL_MAX_BYTES = 1 << 20
_POINTER = re.compile(r"^\s*\^(\w*(?:IMAGE|CORE|QUBE))\s*=\s*(.+?)\s*$", re.IGNORECASE | re.MULTILINE)
_PDS4_FILE = re.compile(
    r"<File_Area_Observational>.*?<file_name>\s*([^<]+?)\s*</file_name>", re.IGNORECASE | re.DOTALL
)


@functools.cache
def installed_drivers() -> frozenset[str]:
    """The raster drivers of the installed GDAL (asked once per process, on first use)."""
    with rasterio.Env() as env:
        return frozenset(env.drivers())


def format_name(path: Path) -> str:
    """What a scene file is, from its extension (``"ISIS3 cube"``)."""
    return FORMAT_NAMES.get(path.suffix.lower(), f"{path.suffix or 'extensionless'} raster")


def missing_driver(path: Path) -> str | None:
    """Why the installed GDAL cannot read ``path`` (no driver for its extension), or None."""
    drivers = DRIVERS_BY_EXT.get(path.suffix.lower())
    if drivers is None or installed_drivers() & set(drivers):
        return None
    return (
        f"{path}: a {format_name(path)} needs GDAL's {' or '.join(drivers)} driver, which the installed "
        f"GDAL {rasterio.__gdal_version__} lacks; convert it elsewhere (gdal_translate -of GTiff) or "
        f"install a rasterio built with {drivers[0]}"
    )


def _pointer_file(value: str) -> str | None:
    """The file a PDS3/ISIS3 pointer value names, or None for an offset into the label's file."""
    first = value.strip().lstrip("(").split(",")[0].strip().strip("\"'")
    return None if not first or first[0].isdigit() else first


def label_data_names(label: Path) -> list[str]:
    """The data file names a detached label points to (empty for an attached label or a file
    that is not a label).

    Raises:
        SceneNotFoundError: The label cannot be read.
    """
    try:
        with label.open("rb") as f:
            text = f.read(LABEL_MAX_BYTES).decode("latin-1")
    except OSError as exc:
        raise SceneNotFoundError(
            f"{label}: cannot be read ({exc}); check the file and its permissions"
        ) from exc
    if label.suffix.lower() == ".xml":
        return [m.group(1) for m in _PDS4_FILE.finditer(text)][:1]
    names = [_pointer_file(m.group(2)) for m in _POINTER.finditer(text)]
    return list(dict.fromkeys(n for n in names if n))


def resolve_beside(label: Path, name: str) -> Path | None:
    """The file ``name`` beside ``label`` as GDAL finds it (the name as written, then in upper
    case, then in lower case: PDS3 labels often name ``NAME.IMG``), or None when there is none."""
    for candidate in dict.fromkeys((name, name.upper(), name.lower())):
        path = label.parent / candidate
        if path.is_file():
            return path
    return None


def label_data_files(label: Path) -> list[Path]:
    """The data files of a detached label (``.lbl``/``.xml``), each checked to exist.

    Raises:
        SceneNotFoundError: A data file the label names is missing (one line: both names).
    """
    if label.suffix.lower() not in LABEL_EXTENSIONS:
        return []
    found = []
    for name in label_data_names(label):
        data = resolve_beside(label, name)
        if data is None:
            raise SceneNotFoundError(
                f"{label}: its data file {name} is missing from {label.parent}; put it beside the label or remove the label"
            )
        found.append(data)
    return found


def check_readable(path: Path) -> None:
    """Check what can be checked before opening a scene file: a driver for its format, and
    the data files of a detached label.

    Raises:
        RasterFormatError: The installed GDAL has no driver for the file's format.
        SceneNotFoundError: A data file its label names is missing.
    """
    problem = missing_driver(path)
    if problem is not None:
        raise RasterFormatError(problem)
    label_data_files(path)


def scene_groups(folder: Path) -> tuple[dict[str, list[Path]], list[str]]:
    """The files of a scenes folder with a scene extension, grouped by stem; a data file named
    by a label of the folder goes with nothing (it is read through its label).

    Args:
        folder: The scenes folder.

    Returns:
        ``(files by stem, problems)``: the problems are one line each (an unreadable label).
    """
    extensions = scene_extensions()
    files = sorted(
        Path(folder) / e.name
        for e in os.scandir(folder)
        if e.is_file()
        and Path(e.name).suffix.lower() in extensions
        and not e.name.lower().endswith(".aux.xml")
    )
    referenced: set[str] = set()
    problems = []
    for path in files:
        if path.suffix.lower() in LABEL_EXTENSIONS:
            try:
                referenced.update(n.lower() for n in label_data_names(path))
            except SceneError as exc:
                problems.append(str(exc))
    groups: dict[str, list[Path]] = {}
    for path in files:
        if path.name.lower() not in referenced or path.suffix.lower() in LABEL_EXTENSIONS:
            groups.setdefault(path.stem, []).append(path)
    return groups, problems


def pick_product(paths: list[Path]) -> Path:
    """The file to open among the files of one stem, checked (:func:`check_readable`).

    Raises:
        SceneError: Several files of one stem that are not one product.
        RasterFormatError: No driver for its format.
        SceneNotFoundError: A data file its label names is missing.
    """
    path = product_file(paths)
    check_readable(path)
    others = [p for p in paths if p != path]
    if others and not set(others) <= set(label_data_files(path)):
        names = " and ".join(p.name for p in sorted(paths))
        raise SceneError(
            f"{names} in {path.parent} are one name but {path.name} does not point to "
            f"{others[0].name}, so they are not one product; remove or rename all but one"
        )
    return path
