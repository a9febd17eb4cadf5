"""The operating point chosen on whole val scenes: stored in the bundle, used by predict."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import tiny_bundle, tiny_config, train_tiny
from tiling.config import TileConfig
from tiling.io import find_scenes
from tiling.pipeline import tile_folder
from training.bundle import load_bundle
from training.predict import PredictConfig, PredictOutcome, predict_path
from training.round_scenes import with_operating_point


@pytest.mark.slow
def test_predict_uses_the_operating_point_stored_in_the_bundle(
    scenes_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    point = {"threshold": 0.3, "merge_distance_px": 4, "min_area_px": 6}
    tiny_bundle(tmp_path / "bundle", "op", config=with_operating_point(tiny_config(), point))
    bundle = load_bundle(tmp_path / "bundle")
    assert bundle.config.evaluation.threshold == 0.3 and bundle.config.evaluation.merge_distance_px == 4
    calls: list[tuple[Any, ...]] = []

    def fake_predict_one(model: Any, version: str, image: Path, out: Path, *args: Any) -> PredictOutcome:
        calls.append(args[1:])
        return PredictOutcome(image.stem, "done")

    monkeypatch.setattr("training.predict.predict_one", fake_predict_one)
    image = find_scenes(scenes_dir)[0].image
    predict_path(bundle, image, tmp_path / "out", PredictConfig())
    assert calls == [(0.3, 6, 4)], "threshold, minimum area and merge distance from the bundle"
    calls.clear()
    predict_path(bundle, image, tmp_path / "out", PredictConfig(threshold=0.7, merge_distance_px=0))
    assert calls == [(0.7, 6, 0)], "options still win over the bundle"


@pytest.mark.slow
def test_training_with_scenes_reports_whole_scenes_and_stores_the_operating_point(
    scenes_dir: Path, tmp_path: Path
) -> None:
    tile_folder(scenes_dir, tmp_path / "patches", TileConfig(workers=1, seed=5))
    out = tmp_path / "run"
    train_tiny(
        tmp_path / "patches",
        out,
        "epochs=1",
        "mining.rounds=0",
        "evaluation.sweep_thresholds=[0.05,0.3,0.6]",
        "evaluation.target_recall=0.5",
        scenes=scenes_dir,
    )
    report = json.loads((out / "report.json").read_text())
    entry = report["rounds"][0]
    for split in ("val", "test"):
        block = entry[split]["whole_scene"]
        assert block["level"] == "whole_scene" and block["scenes"]
        assert {(r["threshold"], r["merge_distance_px"]) for r in block["sweep"]} == {
            (t, d) for t in (0.05, 0.3, 0.5, 0.6) for d in (0, 2, 4)
        }
        assert "recall" in block["operating"] and "false_candidates_per_100km2" in block["operating"]
    point = report["operating_point"]
    assert point["chosen_on"] == "val" and point["target_recall"] == 0.5
    val_rows = entry["val"]["whole_scene"]["sweep"]
    chosen = [
        r
        for r in val_rows
        if (r["threshold"], r["merge_distance_px"]) == (point["threshold"], point["merge_distance_px"])
    ]
    assert point["val"] == chosen[0] and point["test"] is not None
    bundle = load_bundle(out / "bundle")
    assert bundle.config.evaluation.threshold == point["threshold"]
    assert bundle.config.evaluation.merge_distance_px == point["merge_distance_px"]
    assert bundle.metrics["operating_point"] == point
