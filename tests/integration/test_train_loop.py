"""Tiny end-to-end training on CPU: train, mine one round, evaluate, resume after a kill."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from impacts.cli import main
from tests.conftest import TINY_CONFIG, copy_scenes, train_tiny
from tiling.config import TileConfig
from tiling.patchset import read_manifest
from tiling.pipeline import tile_folder


@pytest.fixture(scope="module")
def patch_set(scenes_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("train-patches")
    tile_folder(scenes_dir, out, TileConfig(workers=1, seed=5))
    return out


@pytest.fixture(scope="module")
def run(patch_set: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run") / "tiny"
    train_tiny(patch_set, out)
    return out


def test_run_reports_every_round_with_val_and_test_metrics(run: Path) -> None:
    report = json.loads((run / "report.json").read_text())
    assert [r["round"] for r in report["rounds"]] == [0, 1]
    assert report["rounds"][0]["mined"] == 16 and report["rounds"][1]["mined"] == 0
    for entry in report["rounds"]:
        for split in ("val", "test"):
            m = entry[split]
            assert set(m["object"]) >= {"precision", "recall", "f1"}
            assert set(m["pixel"]) == {"mse", "iou", "dice", "precision", "recall"}
            assert set(m["fp_by_kind"]) >= {"crater", "shadow", "nodata_border", "other"}
            assert 0 <= m["object"]["recall"] <= 1 and m["pixel"]["mse"] >= 0
    for figure in ("loss_curve.png", "rounds.png"):
        assert (run / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (run / "checkpoints" / "last.keras").is_file() and (run / "logs" / "round-0.csv").is_file()


def test_mined_patches_come_from_the_train_pool_and_are_recorded(run: Path, patch_set: Path) -> None:
    before = {r.patch_id: r for r in read_manifest(patch_set / "manifest.csv")}
    after = read_manifest(run / "manifest.csv")
    mined = [r for r in after if r.kind == "mined"]
    assert len(mined) == 16
    for r in mined:
        assert before[r.patch_id].split == "train" and before[r.patch_id].kind == "pool"
        assert r.round == 1 and r.score > 0 and r.model_version.endswith("-r0")
    changed = [r.patch_id for r in after if before[r.patch_id].kind != r.kind]
    assert sorted(changed) == sorted(r.patch_id for r in mined), "only pool patches changed kind"


def test_bundle_rebuilds_alone_and_evaluate_writes_metrics_and_figures(
    run: Path, patch_set: Path, tmp_path: Path
) -> None:
    from training import load_bundle

    bundle = load_bundle(run / "bundle")
    assert bundle.version.endswith("-r1") and bundle.config.model.depth == 2
    batch = np.random.default_rng(0).random((2, 128, 128, 1), dtype=np.float32)
    assert bundle.model.predict_on_batch(batch).shape == (2, 128, 128, 1)
    result = CliRunner().invoke(
        main,
        [
            "-q",
            "evaluate",
            "--model",
            str(run / "bundle"),
            "--data",
            str(patch_set),
            "--split",
            "test",
            "--out",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics["object"]) >= {"precision", "recall", "f1"} and "fp_by_kind" in metrics
    assert metrics["pixel"]["mse"] == pytest.approx(
        json.loads((run / "report.json").read_text())["rounds"][1]["test"]["pixel"]["mse"], rel=1e-4
    )
    for figure in ("pr_curve.png", "grid_chosen.png", "grid_worst.png"):
        assert (tmp_path / figure).stat().st_size > 1000


def test_a_killed_run_resumes_where_it_stopped(patch_set: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "impacts.cli",
        "-q",
        "train",
        "--config",
        str(TINY_CONFIG),
        "--data",
        str(patch_set),
        "--out",
        str(out),
        "--set",
        "epochs=6",
        "--set",
        "mining.rounds=0",
    ]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    log = out / "logs" / "round-0.csv"
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and (not log.is_file() or len(log.read_text().splitlines()) < 3):
            time.sleep(0.2)
        assert log.is_file(), "training never logged an epoch"
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=60)
    done_before = len(log.read_text().splitlines()) - 1
    assert 2 <= done_before < 6 and not (out / "report.json").exists()
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    with log.open() as fh:
        epochs = [int(row["epoch"]) for row in csv.DictReader(fh)]
    assert sorted(set(epochs)) == list(range(6))
    assert len(epochs) <= 6 + 1, "the resumed run started over instead of continuing"
    report = json.loads((out / "report.json").read_text())
    assert report["rounds"][0]["epochs_run"] == 6


@pytest.mark.slow
def test_a_patch_set_without_val_split_trains_on_the_training_loss(scenes_dir: Path, tmp_path: Path) -> None:
    two = sorted(p.stem for p in scenes_dir.glob("*_objects.csv"))[:2]
    scenes = copy_scenes(scenes_dir, tmp_path / "scenes", [n.removesuffix("_objects") for n in two])
    outcomes = tile_folder(scenes, tmp_path / "patches", TileConfig(workers=1, seed=5))
    assert {o.split for o in outcomes} == {"train"}, "two scenes make no val or test split"
    out = tmp_path / "run"
    result = train_tiny(tmp_path / "patches", out, "epochs=2", "early_stopping_patience=1")
    assert "no val split" in result.output and "training loss" in result.output
    report = json.loads((out / "report.json").read_text())
    assert [r["round"] for r in report["rounds"]] == [0, 1] and report["rounds"][0]["mined"] == 16
    for entry in report["rounds"]:
        assert entry["monitor"] == "loss" and "val" not in entry and "test" not in entry
    from training import load_bundle

    bundle = load_bundle(out / "bundle")
    assert bundle.version.endswith("-r1") and bundle.metrics == {}
    assert set(bundle.history) == {"loss", "iou", "mse"} and len(bundle.history["loss"]) == 3
    assert (out / "checkpoints" / "best.keras").is_file()
    assert (out / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (out / "rounds.png").exists() and "rounds.png" not in result.output
