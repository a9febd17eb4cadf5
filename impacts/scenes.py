"""Scene names: what a scene name is, and how it maps to files in a scenes folder.

A scene is named by its image's file stem (``SCENES/NAME.<ext>``, ``<ext>`` one of
:func:`scene_extensions`, any case: GeoTIFF, ISIS3 cube, PDS3 ``.IMG``/``.LBL``, PDS4
``.xml``, JPEG2000). A name is 1-128 letters, digits, ``_``, ``.`` or ``-`` (no separator, no
space, no newline: it can never name a path), and does not end in a role suffix (``_mask``,
``_prob``, and ``_before``, ``_labels`` reserved): ``NAME_mask.cub`` is the mask of ``NAME``,
not a scene, and a scene called ``x_prob`` would collide with the probability map of ``x``.
A detached label and its data file (``NAME.lbl`` + ``NAME.img``, ``NAME.xml`` + ``NAME.img``)
are one product, named by the label; any other two files of one stem are a conflict. Every
layer checks names here: the tiler's scene discovery and its reviewed hard negatives, the
review importer, the service's ``scene`` form field and its queue filters.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, Field

from impacts.errors import SceneError, SceneNameError

#: The characters and length of a scene name (the role suffixes are refused on top).
SCENE_PATTERN = r"^[A-Za-z0-9_.-]{1,128}$"
#: Suffixes of the files that sit beside a scene and belong to it.
MASK_SUFFIX = "_mask"
PROB_SUFFIX = "_prob"
BEFORE_SUFFIX = "_before"
LABELS_SUFFIX = "_labels"
ROLE_SUFFIXES = (MASK_SUFFIX, PROB_SUFFIX, BEFORE_SUFFIX, LABELS_SUFFIX)
#: The extension of the rasters this project writes (synthetic scenes, probability maps), and
#: the name :func:`scene_file` gives a scene file that does not exist yet.
SCENE_EXT = ".tif"
#: The environment variable that lists scene extensions (space or comma separated).
SCENE_EXTENSIONS_ENV = "IMPACTS_SCENE_EXTENSIONS"
#: Scene extensions when the variable is unset: GeoTIFF, ISIS3, PDS3, PDS4, JPEG2000.
DEFAULT_SCENE_EXTENSIONS = (".tif", ".tiff", ".cub", ".img", ".lbl", ".xml", ".jp2")
#: Extensions of detached labels: opened instead of a data file of the same stem.
LABEL_EXTENSIONS = (".lbl", ".xml")
#: GDAL's sidecar files (``NAME.jp2.aux.xml``): never scenes.
SIDECAR_ENDINGS = (".aux.xml",)
RULE = f"1-128 letters, digits, '_', '.' or '-' (no paths), not ending in {' or '.join(ROLE_SUFFIXES)}"
_NAME = re.compile(SCENE_PATTERN)


def is_scene_name(name: object) -> bool:
    """Whether ``name`` is a valid scene name (see the module)."""
    return isinstance(name, str) and bool(_NAME.fullmatch(name)) and not name.endswith(ROLE_SUFFIXES)


def check_scene_name(name: object) -> str:
    """Validate a scene name from a file, a request or a command line.

    Args:
        name: The name.

    Returns:
        The name unchanged.

    Raises:
        SceneNameError: Not a valid scene name (a ValueError; 422 in the service).
    """
    if not is_scene_name(name):
        raise SceneNameError(f"scene {name!r} is not a scene name: use {RULE}")
    assert isinstance(name, str)
    return name


#: A scene name as a pydantic field type (request bodies, queries, records).
SceneName = Annotated[
    str,
    Field(
        pattern=SCENE_PATTERN, description=f"Scene name (NAME of SCENES/NAME.tif, .cub, .lbl, ...): {RULE}."
    ),
    AfterValidator(check_scene_name),
]


def scene_extensions() -> tuple[str, ...]:
    """The extensions of scene files, lower case with their dot: ``$IMPACTS_SCENE_EXTENSIONS``
    (e.g. ``".tif .cub"`` or ``"tif,cub"``) or :data:`DEFAULT_SCENE_EXTENSIONS`; read at every
    call (nothing is fixed at import).

    Raises:
        SceneError: The variable is set but lists no extension.
    """
    raw = os.environ.get(SCENE_EXTENSIONS_ENV)
    if raw is None:
        return DEFAULT_SCENE_EXTENSIONS
    found = tuple(
        dict.fromkeys("." + e.strip().lstrip(".").lower() for e in re.split(r"[\s,]+", raw) if e.strip("."))
    )
    if not found:
        raise SceneError(
            f"{SCENE_EXTENSIONS_ENV}={raw!r} lists no extension; unset it or list some, e.g. '.tif .cub .lbl'"
        )
    return found


def _is_sidecar(filename: str) -> bool:
    return filename.lower().endswith(SIDECAR_ENDINGS)


def scene_of(path: Path) -> str | None:
    """The scene a file in a scenes folder is the image of (its stem), or None when the file is
    not a scene image (a mask, a probability map, another extension, a GDAL sidecar, an
    invalid name)."""
    if path.suffix.lower() not in scene_extensions() or _is_sidecar(path.name):
        return None
    return path.stem if is_scene_name(path.stem) else None


def product_file(paths: list[Path]) -> Path:
    """The file to open among the files of one stem (``NAME{suffix}.<ext>``): the only one, or
    the label of a detached-label product (one ``.lbl``/``.xml`` and one data file).

    Args:
        paths: The files of one stem, at least one.

    Returns:
        The file to open.

    Raises:
        SceneError: Several files that are not one product (``NAME.tif`` and ``NAME.cub``).
    """
    if len(paths) == 1:
        return paths[0]
    labels = [p for p in paths if p.suffix.lower() in LABEL_EXTENSIONS]
    if len(paths) == 2 and len(labels) == 1:
        return labels[0]
    names = " and ".join(p.name for p in sorted(paths))
    raise SceneError(
        f"{names} in {paths[0].parent} are one name but not one product (a label and its data file); remove or rename all but one"
    )


def stem_files(folder: Path, stem: str) -> list[Path]:
    """The files ``folder/STEM.<ext>`` with a scene extension, written in lower or upper
    case, sorted; none when the folder does not exist.

    Each candidate name is looked up directly (a few ``stat`` calls), never by listing the
    folder: an archive folder may hold 100,000 scenes, and callers ask per scene."""
    found: dict[str, Path] = {}
    for ext in scene_extensions():
        for variant in dict.fromkeys((ext, ext.lower(), ext.upper())):
            path = Path(folder) / f"{stem}{variant}"
            if path.is_file():
                found.setdefault(os.path.realpath(path), path)  # one file on a case-blind disk
    return sorted(found.values())


def scene_file(scenes_dir: Path, name: str, suffix: str = "", ext: str | None = None) -> Path:
    """The file ``scenes_dir/NAME{suffix}{ext}`` of a scene, checked to stay in ``scenes_dir``.

    Args:
        scenes_dir: The scenes folder.
        name: The scene name (checked).
        suffix: A role suffix (``""`` for the image, ``MASK_SUFFIX`` for the mask, ...).
        ext: The file extension; None finds the file with any scene extension
            (:func:`product_file`), or names ``SCENE_EXT`` when there is none.

    Returns:
        The path (it may not exist).

    Raises:
        SceneNameError: The name is not a scene name, or the path (links followed, when it
            exists) leaves the folder.
        SceneError: ``ext`` is None and several files of that name are not one product.
    """
    check_scene_name(name)
    root = Path(os.path.abspath(scenes_dir))
    if ext is None:
        found = stem_files(root, f"{name}{suffix}")
        ext = product_file(found).suffix if found else SCENE_EXT
    path = Path(os.path.abspath(root / f"{name}{suffix}{ext}"))
    if path.parent != root:  # the pattern forbids separators; checked again in case it changes
        raise SceneNameError(f"scene {name!r} resolves outside {scenes_dir}; refused")
    if path.exists() and Path(os.path.realpath(path)).parent != Path(os.path.realpath(root)):
        raise SceneNameError(f"scene {name!r} is a link to {os.path.realpath(path)}, outside {root}; refused")
    return path
