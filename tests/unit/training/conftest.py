"""Fixtures of the training tests: a small real patch set tiled from the seeded scenes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tiling.config import TileConfig
from tiling.patchset import PatchSet
from tiling.pipeline import tile_folder


@pytest.fixture(scope="module")
def patch_dir(scenes_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The five seeded scenes tiled into 128 px patches (train/val/test, with a pool)."""
    out = tmp_path_factory.mktemp("patches")
    outcomes = tile_folder(scenes_dir, out, TileConfig(seed=3, workers=1))
    assert all(o.status == "done" for o in outcomes), outcomes
    return out


@pytest.fixture
def patches(patch_dir: Path) -> PatchSet:
    """The patch set, freshly loaded (a test may change its records)."""
    return PatchSet.load(patch_dir)
