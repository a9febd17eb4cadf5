"""Scene names: what a scene name is, and how it maps to files in a scenes folder.

A scene is named by its image's file stem (``SCENES/NAME.tif``). A name is 1-128 letters,
digits, ``_``, ``.`` or ``-`` (no separator, no space, no newline: it can never name a path),
and does not end in a role suffix (``_mask``, ``_prob``): ``NAME_mask.tif`` is the mask of
``NAME``, not a scene, and a scene called ``x_prob`` would collide with the probability map
of ``x``. Every layer checks names here: the tiler's scene discovery and its reviewed hard
negatives, the review importer, the service's ``scene`` form field and its queue filters.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, Field

from impacts.errors import SceneNameError

#: The characters and length of a scene name (the role suffixes are refused on top).
SCENE_PATTERN = r"^[A-Za-z0-9_.-]{1,128}$"
#: Suffixes of the files that sit beside a scene and belong to it.
MASK_SUFFIX = "_mask"
PROB_SUFFIX = "_prob"
ROLE_SUFFIXES = (MASK_SUFFIX, PROB_SUFFIX)
#: The extension of scene rasters.
SCENE_EXT = ".tif"
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
    Field(pattern=SCENE_PATTERN, description=f"Scene name (NAME of SCENES/NAME.tif): {RULE}."),
    AfterValidator(check_scene_name),
]


def scene_file(scenes_dir: Path, name: str, suffix: str = "", ext: str = SCENE_EXT) -> Path:
    """The file ``scenes_dir/NAME{suffix}{ext}`` of a scene, checked to stay in ``scenes_dir``.

    Args:
        scenes_dir: The scenes folder.
        name: The scene name (checked).
        suffix: A role suffix (``""`` for the image, ``MASK_SUFFIX`` for the mask, ...).
        ext: The file extension.

    Returns:
        The path (it may not exist).

    Raises:
        SceneNameError: The name is not a scene name, or the path (links followed, when it
            exists) leaves the folder.
    """
    check_scene_name(name)
    root = Path(os.path.abspath(scenes_dir))
    path = Path(os.path.abspath(root / f"{name}{suffix}{ext}"))
    if path.parent != root:  # the pattern forbids separators; checked again in case it changes
        raise SceneNameError(f"scene {name!r} resolves outside {scenes_dir}; refused")
    if path.exists() and Path(os.path.realpath(path)).parent != Path(os.path.realpath(root)):
        raise SceneNameError(f"scene {name!r} is a link to {os.path.realpath(path)}, outside {root}; refused")
    return path


def scene_of(path: Path) -> str | None:
    """The scene a file in a scenes folder is the image of (its stem), or None when the file is
    not a scene image (a mask, a probability map, another extension, an invalid name)."""
    return path.stem if path.suffix == SCENE_EXT and is_scene_name(path.stem) else None
