"""Shared fixtures: tiny seeded synthetic scenes whose right answers are known."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import settings

from tiling.config import SynthConfig
from tiling.synth import synth_scenes

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Timing limits per example would make property tests flaky on a loaded 2-core CI machine.
settings.register_profile("impacts", deadline=None)
settings.load_profile("impacts")

SCENE_SIZE = (900, 700)
REPO = Path(__file__).resolve().parent.parent


def load_benchmark(name: str) -> ModuleType:
    """A script of ``benchmarks/`` as a module (tests reuse what the benchmarks send)."""
    module_name = f"benchmarks_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, REPO / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def scenes_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five 900x700 synthetic scenes with masks (seed 11); do not modify them."""
    out = tmp_path_factory.mktemp("scenes")
    synth_scenes(out, SynthConfig(count=5, seed=11, size=SCENE_SIZE))
    return out


def copy_scenes(src: Path, dst: Path, names: list[str] | None = None) -> Path:
    """Copy scenes (image, mask, objects) to a folder a test may modify."""
    import shutil

    dst.mkdir(parents=True, exist_ok=True)
    for path in sorted(src.glob("*.tif")) + sorted(src.glob("*_objects.csv")):
        scene = path.stem.removesuffix("_mask").removesuffix("_objects")
        if names is None or scene in names:
            shutil.copy2(path, dst / path.name)
    return dst
