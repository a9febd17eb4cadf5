"""Scene-wide hard-negative mining: what is mined, from which scenes, with which masks."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import rasterio

from impacts.errors import ConfigError
from tests.conftest import copy_scenes
from tiling.config import SynthConfig, TileConfig
from tiling.patchset import EVAL_SPLITS, MINED, MINING_POOL, TRAIN_SPLIT, PatchRecord, PatchSet
from tiling.pipeline import tile_folder
from tiling.synth import synth_scenes
from tiling.windows import Box, Window
from training.config import TrainConfig
from training.data import iterate_patches
from training.scene_mining import FalseCandidate, choose_windows, mine_scenes, train_only_scenes


class DarkModel:
    """A stand-in model: every pixel clearly darker than its window's mean is an impact,
    so dark look-alikes (boulders, shadows, dark crater floors) become false candidates."""

    def predict_on_batch(self, batch: np.ndarray) -> np.ndarray:
        mean = batch.mean(axis=(1, 2, 3), keepdims=True)
        return (batch < mean - 0.12).astype(np.float32)


def candidate(scene: str, score: float, row: int, col: int, area: int = 10, half: int = 2) -> FalseCandidate:
    box = Box(row_min=row - half, row_max=row + half, col_min=col - half, col_max=col + half)
    return FalseCandidate(scene, "boulder", score, area, float(row), float(col), box)


def test_choose_windows_takes_the_worst_first_and_skips_candidates_a_window_already_shows() -> None:
    sizes = {"a": (1000, 1000), "b": (1000, 1000)}
    cands = [
        candidate("a", 0.6, 500, 500),
        candidate("a", 0.9, 100, 100),
        candidate("a", 0.8, 110, 120),  # inside the 0.9 candidate's window: nothing new to show
        candidate("b", 0.7, 300, 300),
        candidate("b", 0.99, 800, 800),  # inside a window mined in an earlier round
    ]
    taken = {"b": [Window(row=700, col=700, height=128, width=128)]}
    chosen = choose_windows(cands, 2, 128, sizes, taken)
    assert [(c.scene, c.score) for c, _ in chosen] == [("a", 0.9), ("b", 0.7)]
    assert all(w.contains(c.box) and (w.height, w.width) == (128, 128) for c, w in chosen)
    assert len(taken["a"]) == 1 and len(taken["b"]) == 2  # the choice is remembered for later rounds
    # An edge candidate gets a window moved inside the scene.
    (_, edge), *_ = choose_windows([candidate("a", 0.5, 2, 998)], 1, 128, sizes, {})
    assert (edge.row, edge.col) == (0, 1000 - 128)


def record(scene: str, split: str, kind: str = "negative") -> PatchRecord:
    return PatchRecord(f"{scene}-{split}-{kind}", scene, 0, 0, 128, 128, split, kind, 0.0, 0.0, "s", 0)


def test_only_scenes_with_train_rows_alone_are_mined() -> None:
    records = [
        record("t1", "train"),
        record("t1", "train", MINING_POOL),
        record("t2", "train"),
        record("mixed", "train"),
        record("mixed", "val"),  # a scene with any val or test row is never mined
        record("v", "val"),
        record("x", "test"),
    ]
    assert train_only_scenes(records) == ["t1", "t2"]


def _check_patches_are_the_scene_windows(patches: PatchSet, mined: list[PatchRecord], scenes: Path) -> None:
    """Every mined patch holds its window's pixels and the scene's true (0/1) mask there."""
    by_id = {r.patch_id: r for r in mined}
    for ids, images, masks in iterate_patches(patches, mined, 16):
        for pid, image, mask in zip(ids, images, masks, strict=True):
            r = by_id[pid]
            window = rasterio.windows.Window(r.col, r.row, r.width, r.height)
            with rasterio.open(scenes / f"{r.scene}.tif") as ds:
                raw = ds.read(1, window=window)  # the pipeline gives pixels scaled to [0, 1]
            assert np.array_equal(np.rint(np.squeeze(image) * 255), raw)
            with rasterio.open(scenes / f"{r.scene}_mask.tif") as ds:
                truth = (ds.read(1, window=window) != 0).astype(np.uint8)
            assert np.array_equal(np.squeeze(mask), truth)
            assert r.impact_fraction == pytest.approx(truth.mean())


def test_scene_mining_never_opens_val_or_test_scenes_and_records_every_window(
    scenes_dir: Path, patch_dir: Path, tmp_path: Path
) -> None:
    scenes = copy_scenes(scenes_dir, tmp_path / "scenes")
    patches = PatchSet.load(patch_dir)
    held_out = sorted({r.scene for r in patches.records if r.split in EVAL_SPLITS})
    assert held_out
    for name in held_out:  # reading any of these would fail the run
        for path in scenes.glob(f"{name}*"):
            path.write_bytes(b"not a raster")
    cfg = TrainConfig.model_validate({"evaluation": {"scenes_dir": str(scenes)}})
    out = tmp_path / "run"
    result = mine_scenes(DarkModel(), "run-r0", patches, cfg, out, 1, 12)

    train_scenes = train_only_scenes(patches.records)
    assert result.scenes == train_scenes and result.records
    assert len(result.records) <= 12 and result.false_candidates >= len(result.records)
    assert {r.scene for r in result.records} <= set(train_scenes)
    assert all(
        r.kind == MINED and r.split == TRAIN_SPLIT and r.round == 1 and r.model_version == "run-r0"
        for r in result.records
    )
    scores = [r.score for r in result.records]
    assert all(0.5 <= s <= 1 for s in scores)
    with (out / "mining" / "round-1" / "windows.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [row["patch_id"] for row in rows] == [r.patch_id for r in result.records]
    assert all(row["kind"] != "impact" for row in rows)  # only false candidates are mined
    assert sum(result.by_kind.values()) == len(rows)
    patches.records.extend(result.records)
    _check_patches_are_the_scene_windows(patches, result.records, scenes_dir)

    # A second round shows nothing twice: every candidate it mines lies outside the first windows.
    again = mine_scenes(DarkModel(), "run-r1", patches, cfg, out, 2, 12)
    first = {(r.scene, r.row, r.col) for r in result.records}
    assert not first & {(r.scene, r.row, r.col) for r in again.records}


def test_scene_mining_needs_the_scenes_folder(patch_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--scenes"):
        mine_scenes(DarkModel(), "v", PatchSet.load(patch_dir), TrainConfig(), tmp_path, 1, 4)


def test_with_dense_labels_mined_patches_keep_their_true_targets(tmp_path: Path) -> None:
    scenes = tmp_path / "scenes"
    synth_scenes(
        scenes, SynthConfig(count=3, seed=7, size=(640, 640), difficulty="realistic", impact_density=250.0)
    )
    data = tmp_path / "patches"
    tile_folder(scenes, data, TileConfig(seed=1, workers=1))
    patches = PatchSet.load(data)
    train = [r for r in patches.records if r.split == TRAIN_SPLIT]
    # The regime: windows without a target are rare, so the pool can give next to nothing.
    assert len([r for r in train if r.kind == MINING_POOL]) <= 2
    cfg = TrainConfig.model_validate({"evaluation": {"scenes_dir": str(scenes)}})
    result = mine_scenes(DarkModel(), "dense-r0", patches, cfg, tmp_path / "run", 1, 20)
    assert result.records, "the dense scenes' false candidates give patches the pool could not"
    assert any(r.impact_fraction > 0 for r in result.records)
    patches.records.extend(result.records)
    _check_patches_are_the_scene_windows(patches, result.records, scenes)
