"""LSF job scripts: their #BSUB directives parse, and their command runs here as LSF would."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from tests.conftest import tiny_bundle
from tests.integration.mpi import mpi_env, require_horovod
from tiling.patchset import read_manifest

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
    assert "deprecated" not in result.stderr, "the merge job calls `impacts tile merge`"
    records = read_manifest(tmp_path / "patches" / "manifest.csv")
    assert {r.scene for r in records} == {
        p.stem for p in scenes_dir.glob("*.tif") if not p.stem.endswith("_mask")
    }


def test_predict_job_is_an_array_and_its_element_predicts_its_scene(scenes_dir: Path, tmp_path: Path) -> None:
    options = bsub_directives(REPO / "jobs" / "predict.bsub")
    assert re.fullmatch(r"predict\[1-\d+\]", options["-J"]) and "%I" in options["-o"]
    tiny_bundle(tmp_path / "bundle", "job-test")
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


def test_no_job_script_uses_a_deprecated_flag() -> None:
    from tiling.cli import DEPRECATED_FLAGS

    flags = [spelling.split()[0] for spelling, _, _ in DEPRECATED_FLAGS.values()]
    for script in sorted((REPO / "jobs").glob("*.bsub")):
        words = shlex.split(script.read_text(), comments=True)
        assert not set(flags) & set(words), script.name


TRAIN_JOBS = ("train-1gpu", "train-node", "train-multinode")


def test_every_job_script_has_a_name_queue_wall_time_and_log_files() -> None:
    scripts = sorted((REPO / "jobs").glob("*.bsub"))
    assert {s.stem for s in scripts} >= {"tile", "predict", *TRAIN_JOBS}
    for script in scripts:
        options = bsub_directives(script)
        assert options.get("-J") and options.get("-q"), script.name
        assert re.fullmatch(r"\d{1,2}:\d{2}", options["-W"]), script.name
        assert "%J" in options["-o"] and "%J" in options["-e"], script.name
        assert script.read_text().count("impacts ") >= 1, script.name


def test_train_jobs_ask_lsf_for_the_gpus_their_strategy_uses() -> None:
    one = bsub_directives(REPO / "jobs" / "train-1gpu.bsub")
    assert one["-gpu"] == "num=1:mode=exclusive_process" and one["-n"] == "1"
    node = bsub_directives(REPO / "jobs" / "train-node.bsub")
    assert node["-gpu"] == "num=4:mode=exclusive_process" and "span[hosts=1]" in node["-R"]
    multi = bsub_directives(REPO / "jobs" / "train-multinode.bsub")
    assert multi["-gpu"] == "num=4:mode=exclusive_process" and "span[ptile=4]" in multi["-R"]
    assert int(multi["-n"]) % 4 == 0 and int(multi["-n"]) > 4  # several nodes, one rank per GPU
    text = (REPO / "jobs" / "train-multinode.bsub").read_text()
    assert "mpirun" in text and "--strategy horovod" in text


@pytest.fixture(scope="module")
def patch_set(scenes_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tiling.config import TileConfig
    from tiling.pipeline import tile_folder

    out = tmp_path_factory.mktemp("job-patches")
    tile_folder(scenes_dir, out, TileConfig(workers=1, seed=5))
    return out


def _dry_run(job: str, patch_set: Path, run: Path, **extra: str) -> list[dict[str, object]]:
    env = {**mpi_env(), "DRY_RUN": "1", "DATA": str(patch_set), "RUN": str(run), **extra}
    result = subprocess.run(
        ["bash", f"jobs/{job}.bsub"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert not run.exists(), "a dry run wrote the run folder"
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def test_single_gpu_and_node_jobs_dry_run_here(patch_set: Path, tmp_path: Path) -> None:
    (single,) = _dry_run("train-1gpu", patch_set, tmp_path / "one")
    assert single["strategy"] == "single" and single["global_batch"] == 32
    (node,) = _dry_run("train-node", patch_set, tmp_path / "node")
    # Here the node's GPUs are two logical CPU devices; the global batch grows with them.
    assert node["strategy"] == "mirrored" and node["replicas"] == 2 and node["global_batch"] == 64
    assert node["precision"] == "mixed_float16"
    assert node["learning_rate"] == pytest.approx(0.001 * 2**0.5)


def test_multinode_job_starts_one_horovod_rank_per_slot_with_its_own_shard(
    patch_set: Path, tmp_path: Path
) -> None:
    require_horovod()
    plans = _dry_run("train-multinode", patch_set, tmp_path / "hvd", LSB_DJOB_NUMPROC="2")
    assert sorted(p["rank"] for p in plans) == [0, 1]
    assert all(p["strategy"] == "horovod" and p["processes"] == 2 and p["global_batch"] == 64 for p in plans)
    assert [p["writes_files"] for p in sorted(plans, key=lambda p: p["rank"])] == [True, False]
    records = read_manifest(patch_set / "manifest.csv")
    positives = sum(1 for r in records if r.split == "train" and r.kind == "positive")
    assert sum(p["rank_train_positives"] for p in plans) == positives  # type: ignore[misc]
    assert abs(plans[0]["rank_train_positives"] - plans[1]["rank_train_positives"]) <= 1  # type: ignore[operator]
