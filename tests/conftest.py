"""Shared fixtures: tiny seeded synthetic scenes whose right answers are known."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import settings

from tiling.config import SynthConfig
from tiling.synth import synth_scenes
from training.config import ModelConfig, TrainConfig

if TYPE_CHECKING:
    from click.testing import Result

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Timing limits per example would make property tests flaky on a loaded 2-core CI machine.
settings.register_profile("impacts", deadline=None)
settings.load_profile("impacts")

SCENE_SIZE = (900, 700)
REPO = Path(__file__).resolve().parent.parent
TINY_CONFIG = REPO / "configs" / "unet-tiny.yaml"


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


def tiny_config() -> TrainConfig:
    """The training config of a tiny U-Net (depth 2, 4 base filters; all else default)."""
    return TrainConfig(model=ModelConfig(depth=2, base_filters=4))


def tiny_bundle(
    path: Path,
    version: str = "untrained-test",
    *,
    metrics: dict[str, Any] | None = None,
    config: TrainConfig | None = None,
) -> Path:
    """Export an untrained model bundle at ``path`` (quick to build; answers need no training).

    Args:
        path: The bundle path (``.../bundle``), as for :func:`training.bundle.export_bundle`.
        version: The model version the bundle reports.
        metrics: Metrics per split stored in the bundle (default none).
        config: The training config stored and built (default :func:`tiny_config`).

    Returns:
        ``path``.
    """
    from training.bundle import export_bundle
    from training.model import build_unet  # TensorFlow only for the tests that need a bundle

    cfg = config if config is not None else tiny_config()
    return export_bundle(path, build_unet(cfg.model), cfg, version, {}, metrics or {})


@pytest.fixture(scope="session")
def untrained_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny untrained bundle, version ``untrained-test``; do not modify it."""
    return tiny_bundle(tmp_path_factory.mktemp("bundle") / "bundle")


def train_tiny(data: Path, out: Path, *overrides: str, scenes: Path | None = None) -> Result:
    """``impacts train`` with ``configs/unet-tiny.yaml`` on the patch set ``data``; fails the
    test unless it succeeds.

    Args:
        data: The patch set folder.
        out: The run folder to write.
        *overrides: Config overrides, each passed as ``--set KEY=VALUE`` (``epochs=1``).
        scenes: Whole scenes to evaluate on (``--scenes``), if any.

    Returns:
        The command's result (exit code 0), for its output.
    """
    from click.testing import CliRunner

    from impacts.cli import main

    args = ["-q", "train", "--config", str(TINY_CONFIG), "--data", str(data), "--out", str(out)]
    if scenes is not None:
        args += ["--scenes", str(scenes)]
    for override in overrides:
        args += ["--set", override]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return result
