"""LSF job scripts: their #BSUB directives parse, and their command runs here as LSF would."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

from tiling.manifest import read_manifest

REPO = Path(__file__).resolve().parents[2]
DIRECTIVE = re.compile(r"^#BSUB\s+(-\w+)\s*(.*)$")


def bsub_directives(script: Path) -> dict[str, str]:
    """The ``#BSUB`` options of a job script, as LSF reads them (before the first command)."""
    options: dict[str, str] = {}
    for line in script.read_text().splitlines():
        match = DIRECTIVE.match(line.strip())
        if match:
            options[match.group(1)] = " ".join(shlex.split(match.group(2)))
    return options


def test_tile_job_is_an_array_with_wall_time_and_per_element_logs() -> None:
    options = bsub_directives(REPO / "jobs" / "tile.bsub")
    assert re.fullmatch(r"tile\[1-\d+\]", options["-J"])
    assert re.fullmatch(r"\d{1,2}:\d{2}", options["-W"])
    assert "%J" in options["-o"] and "%I" in options["-o"] and "%I" in options["-e"]


def test_tile_job_elements_then_merge_build_the_patch_set(scenes_dir: Path, tmp_path: Path) -> None:
    n = len([p for p in scenes_dir.glob("*.tif") if not p.stem.endswith("_mask")])
    env = {**os.environ, "SCENES": str(scenes_dir), "PATCHES": str(tmp_path / "patches")}
    for index in range(1, n + 1):
        result = subprocess.run(
            ["bash", "jobs/tile.bsub"],
            cwd=REPO,
            env={**env, "LSB_JOBINDEX": str(index)},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, result.stderr
    result = subprocess.run(
        ["bash", "jobs/tile.bsub"],
        cwd=REPO,
        env={**env, "MERGE": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    records = read_manifest(tmp_path / "patches" / "manifest.csv")
    assert {r.scene for r in records} == {
        p.stem for p in scenes_dir.glob("*.tif") if not p.stem.endswith("_mask")
    }


def test_predict_job_is_an_array_and_its_element_predicts_its_scene(scenes_dir: Path, tmp_path: Path) -> None:
    from training.bundle import export_bundle
    from training.config import ModelConfig, TrainConfig
    from training.model import build_unet

    options = bsub_directives(REPO / "jobs" / "predict.bsub")
    assert re.fullmatch(r"predict\[1-\d+\]", options["-J"]) and "%I" in options["-o"]
    cfg = TrainConfig(model=ModelConfig(depth=2, base_filters=4))
    export_bundle(tmp_path / "bundle", build_unet(cfg.model), cfg, "job-test", {}, {})
    env = {
        **os.environ,
        "SCENES": str(scenes_dir),
        "MODEL": str(tmp_path / "bundle"),
        "PREDICTIONS": str(tmp_path / "pred"),
        "LSB_JOBINDEX": "2",
    }
    result = subprocess.run(
        ["bash", "jobs/predict.bsub"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    second = sorted(p.stem for p in scenes_dir.glob("*.tif") if not p.stem.endswith("_mask"))[1]
    assert [p.name for p in (tmp_path / "pred").glob("*_prob.tif")] == [f"{second}_prob.tif"]
