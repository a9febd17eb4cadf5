"""Scale-out training on CPU processes: MirroredStrategy over two logical CPU devices, and
Horovod with two ranks started by ``mpirun`` and by ``horovodrun`` on localhost.

Horovod is built by ``make horovod`` (the test command depends on it); without it these
tests are skipped, unless ``IMPACTS_REQUIRE_HOROVOD=1`` (set by ``make test``) makes
its absence a failure.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.integration.mpi import BIN, mpi_env, require_horovod
from tiling.config import TileConfig
from tiling.pipeline import tile_folder

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "configs" / "unet-tiny.yaml"
WORKER = Path(__file__).with_name("hvd_worker.py")
# Reproducible comparisons: no shuffling or augmentation, no dropout, three steps.
SAME_STEPS = [
    "data.augment=false",
    "data.shuffle_buffer=1",
    "model.dropout=0",
    "mining.rounds=0",
    "epochs=1",
    "data.steps_per_epoch=3",
    "optimizer.decay=none",
]
#: N ranks at batch B/N against one at batch B: weight distance over the update's size.
#: Measured 0.085 (BatchNorm sees half batches); ranks that did not average gradients
#: ended 0.21 away (and 0.35 from each other).
MATCH_TOLERANCE = 0.15

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def horovod() -> None:
    require_horovod()


@pytest.fixture(scope="module")
def patch_set(scenes_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("scale-patches")
    tile_folder(scenes_dir, out, TileConfig(workers=1, seed=5))
    return out


def run(cmd: list[str], timeout: int = 400) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        cmd, cwd=REPO, env=mpi_env(), capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-5000:])
    return result


def worker(data: Path, out: Path, weights: Path, *sets: str) -> list[str]:
    weights.mkdir(parents=True, exist_ok=True)
    return [sys.executable, str(WORKER), str(TINY), str(data), str(out), str(weights), *sets]


def load_weights(path: Path) -> list[np.ndarray]:
    with np.load(path) as arrays:
        return [arrays[f"w{i}"] for i in range(len(arrays.files))]


def distance(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return float(np.sqrt(sum(float(((x - y) ** 2).sum()) for x, y in zip(a, b, strict=True))))


def test_mirrored_over_two_cpu_devices_trains_with_the_global_batch(patch_set: Path, tmp_path: Path) -> None:
    out = tmp_path / "mirrored"
    run(
        [
            str(BIN / "impacts"),
            "-q",
            "train",
            "--config",
            str(TINY),
            "--data",
            str(patch_set),
            "--out",
            str(out),
            "--strategy",
            "mirrored",
            "--set",
            "distribute.lr_scaling=linear",
        ]
    )
    report = json.loads((out / "report.json").read_text())
    dist = report["distribution"]
    assert dist["strategy"] == "mirrored" and dist["replicas"] == 2
    assert dist["global_batch"] == 16 and dist["learning_rate"] == pytest.approx(2 * 0.003)
    assert [r["round"] for r in report["rounds"]] == [0, 1] and report["rounds"][0]["mined"] > 0
    assert "val" in report["rounds"][-1] and (out / "bundle").is_dir()


def test_mpirun_two_ranks_match_one_rank_and_only_rank_0_writes(
    horovod: None, patch_set: Path, tmp_path: Path
) -> None:
    one, two = tmp_path / "w1", tmp_path / "w2"
    run(["mpirun", "-np", "1", *worker(patch_set, tmp_path / "one", one, *SAME_STEPS, "data.batch_size=16")])
    # MPMD: rank 1 is given its own run folder, so anything it wrote would show there.
    run(
        [
            "mpirun",
            "-np",
            "1",
            *worker(patch_set, tmp_path / "two", two, *SAME_STEPS, "data.batch_size=8"),
            ":",
            "-np",
            "1",
            *worker(patch_set, tmp_path / "two-rank1", two, *SAME_STEPS, "data.batch_size=8"),
        ]
    )
    rank0, rank1 = load_weights(two / "rank0.npz"), load_weights(two / "rank1.npz")
    assert distance(rank0, rank1) == 0.0, "the ranks drifted apart"
    assert not (tmp_path / "two-rank1").exists(), "rank 1 wrote files"
    report = json.loads((tmp_path / "two" / "report.json").read_text())
    assert report["distribution"]["processes"] == 2 and report["distribution"]["global_batch"] == 16
    assert (tmp_path / "two" / "bundle").is_dir() and (tmp_path / "two" / "logs" / "round-0.csv").is_file()

    import keras

    from impacts.config import load_config
    from training.config import TrainConfig
    from training.model import build_unet

    keras.utils.set_random_seed(0)
    initial = build_unet(load_config(TINY, TrainConfig, ["model.dropout=0"]).model).get_weights()
    single = load_weights(one / "rank0.npz")
    assert distance(rank0, single) / distance(single, initial) < MATCH_TOLERANCE


def test_horovodrun_two_ranks_end_with_identical_weights(
    horovod: None, patch_set: Path, tmp_path: Path
) -> None:
    weights = tmp_path / "weights"
    run(
        [
            str(BIN / "horovodrun"),
            "-np",
            "2",
            "-H",
            "localhost:2",
            "--mpi-args=--allow-run-as-root --oversubscribe",
            *worker(patch_set, tmp_path / "run", weights, "mining.rounds=1", "epochs=1"),
        ]
    )
    rank0, rank1 = load_weights(weights / "rank0.npz"), load_weights(weights / "rank1.npz")
    assert distance(rank0, rank1) == 0.0
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    # Mining split the pool over the ranks and gathered the scores: both ranks mined alike.
    assert report["rounds"][0]["mined"] > 0 and report["distribution"]["processes"] == 2
