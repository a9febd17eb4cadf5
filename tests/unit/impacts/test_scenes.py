"""Scene names: one rule for every layer, and files that never leave the scenes folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from impacts.errors import SceneNameError
from impacts.scenes import MASK_SUFFIX, SceneName, check_scene_name, is_scene_name, scene_file, scene_of

BAD = [
    "../outside",
    "a/b",
    "/etc/passwd",
    "..\\x",
    "with space",
    "",
    "x" * 129,
    "S1_mask",
    "S1_prob",
    "S1_before",
    "S1_labels",
    "é",
    "S1\n",
]
GOOD = ["P01_001234_1234_XI_45N123W", "B01_x.y-z", "S1", "x" * 128, "a_masks", "prob"]


@pytest.mark.parametrize("name", BAD)
def test_names_that_could_be_paths_or_role_files_are_refused_everywhere(name: str) -> None:
    assert not is_scene_name(name)
    with pytest.raises(SceneNameError, match="not a scene name"):
        check_scene_name(name)

    class Query(BaseModel):
        scene: SceneName

    with pytest.raises(ValidationError):
        Query(scene=name)
    assert scene_of(Path(f"{name}.tif")) is None or "/" in name


@pytest.mark.parametrize("name", GOOD)
def test_plain_names_are_scene_names(name: str, tmp_path: Path) -> None:
    assert check_scene_name(name) == name
    assert scene_file(tmp_path, name) == tmp_path / f"{name}.tif"
    assert scene_file(tmp_path, name, MASK_SUFFIX) == tmp_path / f"{name}_mask.tif"
    assert scene_of(tmp_path / f"{name}.tif") == name
    assert scene_of(tmp_path / f"{name}_mask.tif") is None
    assert scene_of(tmp_path / f"{name}.png") is None


def test_a_link_leading_out_of_the_folder_is_refused(tmp_path: Path) -> None:
    inside, outside = tmp_path / "scenes", tmp_path / "elsewhere.tif"
    inside.mkdir()
    outside.write_bytes(b"x")
    (inside / "x.tif").symlink_to(outside)
    with pytest.raises(SceneNameError, match="outside"):
        scene_file(inside, "x")


def test_scene_files_stay_in_the_folder(tmp_path: Path) -> None:
    assert scene_file(tmp_path, "B01_x.y-z") == tmp_path / "B01_x.y-z.tif"
    assert scene_file(tmp_path / "a" / ".." / "b", "..").parent == tmp_path / "b"
    with pytest.raises(ValueError, match="not a scene name"):
        scene_file(tmp_path, "S1\n")
