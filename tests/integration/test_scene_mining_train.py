"""``impacts train`` with scene-wide mining: the train scenes' false candidates join round 1."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from impacts.cli import main
from tests.conftest import TINY_CONFIG, train_tiny
from tiling.config import TileConfig
from tiling.patchset import PatchSetLayout, read_manifest
from tiling.pipeline import tile_folder


def test_training_mines_whole_train_scenes_and_trains_on_the_windows(
    scenes_dir: Path, tmp_path: Path
) -> None:
    data = tmp_path / "patches"
    tile_folder(scenes_dir, data, TileConfig(workers=1, seed=5))
    run = tmp_path / "run"
    # A low mining threshold: even a barely trained tiny model leaves false candidates.
    train_tiny(data, run, "mining.source=scenes", "mining.threshold=0.2", scenes=scenes_dir)

    report = json.loads((run / "report.json").read_text())
    first, last = report["rounds"]
    block = first["mined_scenes"]
    assert first["mined"] == block["windows"] > 0 and "mined_pool" not in first
    assert (
        block["false_candidates"] >= block["windows"] and sum(block["by_kind"].values()) == block["windows"]
    )
    assert last["epochs_run"] >= 1  # round 1 trained on them

    manifest = read_manifest(PatchSetLayout(run).manifest)
    mined = [r for r in manifest if r.kind == "mined"]
    assert len(mined) == block["windows"]
    held_out = {r.scene for r in manifest if r.split in ("val", "test")}
    assert all(r.split == "train" and r.scene not in held_out and r.round == 1 for r in mined)
    assert set(block["scenes"]).isdisjoint(held_out)
    for r in mined:  # the shards live in the run folder, named relative to the patch set
        assert PatchSetLayout(data).shard(r.shard).resolve().is_relative_to(run.resolve())
    # The source patch set is untouched.
    assert not [r for r in read_manifest(PatchSetLayout(data).manifest) if r.kind == "mined"]


def test_scene_mining_without_the_scenes_folder_is_refused_in_one_line(
    scenes_dir: Path, tmp_path: Path
) -> None:
    data = tmp_path / "patches"
    tile_folder(scenes_dir, data, TileConfig(workers=1, seed=5))
    args = ["train", "--config", str(TINY_CONFIG), "--data", str(data), "--out", str(tmp_path / "run")]
    result = CliRunner().invoke(main, [*args, "--set", "mining.source=scenes"])
    assert result.exit_code != 0
    assert "impacts train --scenes DIR" in result.output and "Traceback" not in result.output
