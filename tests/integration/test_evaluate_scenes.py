"""Whole-scene evaluation on hand-made scenes whose right answers are known, and the
``impacts evaluate`` command in scene mode and in patch + scene mode."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from rasterio.transform import Affine

from impacts.cli import main
from impacts.errors import SceneError, SceneNotFoundError
from tests.conftest import tiny_config
from tiling.config import TileConfig
from tiling.io import geotiff_profile
from tiling.patchset import read_manifest
from tiling.pipeline import tile_folder
from tiling.synth import MARS_EQC, OBJECT_COLUMNS
from training.config import EvalConfig
from training.evaluate_scenes import evaluate_scenes, find_eval_scenes
from training.predict import PredictConfig
from training.scene_pass import threshold_level

TRANSFORM = Affine(6.0, 0, 1_000_000.0, 0, -6.0, 500_000.0)
TERRAIN, DARK, GREY = 180, 20, 105  # grey: probability ~0.42 under _Darkness


class _Darkness:
    """A pixel-wise "model": darker is more likely an impact (so window blending changes
    nothing): ``p = clip(2.4 * (0.6 - x), 0, 1)``."""

    def predict_on_batch(self, batch: np.ndarray) -> np.ndarray:
        return np.clip(2.4 * (0.6 - batch), 0.0, 1.0).astype(np.float32)


def _disc(image: np.ndarray, row: int, col: int, radius: float, value: int) -> None:
    rr, cc = np.ogrid[: image.shape[0], : image.shape[1]]
    image[(rr - row) ** 2 + (cc - col) ** 2 <= radius**2] = value


def _write(path: Path, array: np.ndarray, nodata: float | None) -> None:
    profile = geotiff_profile(*array.shape, "uint8", MARS_EQC, TRANSFORM, nodata=nodata)
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(array, 1)


@pytest.fixture(scope="module")
def hand_made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three scenes: S1 with an objects list, S2 with a mask only, S3 without truth."""
    root = tmp_path_factory.mktemp("hand-made")
    s1 = np.full((512, 384), TERRAIN, np.uint8)
    s1[:, :32] = 0  # no-data border
    _disc(s1, 100, 150, 12, DARK)  # impact 0
    _disc(s1, 300, 300, 8, DARK)  # impact 1
    for dr, dc in ((-4, -4), (-4, 4), (4, -4), (4, 4)):  # impact 2: a cluster of spots 3 px apart
        _disc(s1, 200 + dr, 100 + dc, 2, DARK)
    rr, cc = np.ogrid[:512, :384]
    s1[((rr - 420) / 6.0) ** 2 + ((cc - 220) / 25.0) ** 2 <= 1] = DARK  # a shadow
    _disc(s1, 60, 320, 4, GREY)  # a faint spot on nothing listed
    _write(root / "S1.tif", s1, nodata=0)
    objects = [
        ("impact", 100, 150, 12),
        ("impact", 300, 300, 8),
        ("impact", 200, 100, 10),  # the cluster: one impact with its halo radius
        ("impact", 460, 100, 6),  # listed, not in the image: a miss
        ("shadow", 420, 220, 25),
        ("crater", 50, 50, 20),
    ]
    with (root / "S1_objects.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(OBJECT_COLUMNS)
        for k, (kind, row, col, radius) in enumerate(objects):
            writer.writerow([k, kind, row, col, radius, 0, 0])
    s2 = np.full((384, 384), TERRAIN, np.uint8)
    _disc(s2, 150, 200, 9, DARK)
    _disc(s2, 300, 60, 3, DARK)  # in the image, not in the mask: a false candidate
    _write(root / "S2.tif", s2, nodata=0)
    mask = np.zeros_like(s2)
    _disc(mask, 150, 200, 9, 1)
    _write(root / "S2_mask.tif", mask, nodata=None)
    _write(root / "S3.tif", np.full((256, 256), TERRAIN, np.uint8), nodata=0)
    return root


def _bundle() -> SimpleNamespace:
    return SimpleNamespace(
        model=_Darkness(),
        version="darkness",
        config=tiny_config(),
    )


WINDOWS = PredictConfig(window_px=128, overlap_px=32)


def test_scenes_with_truth_are_found_and_named_ones_are_checked(hand_made: Path) -> None:
    scenes = find_eval_scenes(hand_made)
    assert [(s.name, s.truth) for s in scenes] == [("S1", "objects"), ("S2", "mask")]
    with pytest.raises(SceneError, match="S3"):
        find_eval_scenes(hand_made, ["S1", "S3"])
    with pytest.raises(SceneNotFoundError, match="S9"):
        find_eval_scenes(hand_made, ["S9"])


def test_whole_scene_metrics_of_known_scenes(hand_made: Path, tmp_path: Path) -> None:
    cfg = EvalConfig(threshold=0.5, min_area_px=4)
    result = evaluate_scenes(_bundle(), find_eval_scenes(hand_made), cfg, tmp_path, WINDOWS)
    s1, s2 = result["per_scene"]["S1"], result["per_scene"]["S2"]
    assert (s1["impacts"], s1["found"], s1["duplicates"]) == (4, 3, 3), (
        "the cluster's 4 spots: 1 hit + 3 duplicates"
    )
    assert s1["false_candidates_by_kind"] == {"shadow": 1}
    assert s1["recall_by_size"][">=20"]["impacts"] == 0 and s1["recall_by_size"]["5-10"] == {
        "impacts": 2,
        "found": 1,
        "recall": 0.5,
    }
    valid_km2 = (512 * 384 - 512 * 32) * 36 / 1e6
    assert s1["valid_area_km2"] == pytest.approx(valid_km2)
    assert s1["false_candidates_per_100km2"] == pytest.approx(100 / valid_km2)
    assert (s1["pixel_area_m2"], s1["pixel_area_from"]) == (36.0, "transform")
    assert (s2["truth"], s2["impacts"], s2["found"], s2["false_candidates"]) == ("mask", 1, 1, 1)
    overall = result["overall"]
    assert (overall["impacts"], overall["found"], overall["detections"]) == (5, 4, 9)
    assert overall["precision"] == pytest.approx(4 / 9)
    # The sweep: the grey spot (p ~ 0.42) is a false candidate at 0.4, not at 0.5; the row
    # at the operating threshold agrees with the operating point measured on predict's CSV.
    by_threshold = {row["threshold"]: row for row in result["sweep"]}
    assert by_threshold[0.4]["false_candidates"] == by_threshold[0.5]["false_candidates"] + 1
    assert {k: by_threshold[0.5][k] for k in ("detections", "hits", "duplicates", "false_candidates")} == {
        "detections": 9,
        "hits": 4,
        "duplicates": 3,
        "false_candidates": 2,
    }
    assert json.loads(json.dumps(result)) == result, "JSON-ready"
    for figure in ["scene_curve.png", "quicklooks/S1.png", "quicklooks/S2.png"]:
        assert (tmp_path / figure).stat().st_size > 5000
    rows = list(csv.DictReader((tmp_path / "matches" / "S1_matches.csv").open()))
    assert sorted(r["outcome"] for r in rows) == sorted(
        ["hit"] * 3 + ["duplicate"] * 3 + ["false_candidate", "miss"]
    )
    assert (tmp_path / "predictions" / "S1_prob.tif").is_file()


def test_merging_makes_the_cluster_one_detection(hand_made: Path, tmp_path: Path) -> None:
    cfg = EvalConfig(threshold=0.5, min_area_px=4, merge_distance_px=4)
    result = evaluate_scenes(_bundle(), find_eval_scenes(hand_made, ["S1"]), cfg, tmp_path, WINDOWS)
    s1 = result["per_scene"]["S1"]
    assert (s1["found"], s1["duplicates"], s1["detections"]) == (3, 0, 4)
    assert all(row["duplicates"] == 0 for row in result["sweep"])
    detections = list(csv.DictReader((tmp_path / "predictions" / "S1_detections.csv").open()))
    cluster = [d for d in detections if abs(float(d["centroid_row"]) - 200) < 10]
    assert len(cluster) == 1 and int(cluster[0]["area_px"]) == 4 * 13


def test_threshold_levels_match_the_stored_map() -> None:
    assert [threshold_level(t) for t in (0.1, 0.3, 0.5, 0.9)] == [26, 77, 128, 230]
    for t in np.linspace(0.01, 0.99, 99):
        level = threshold_level(float(t))
        assert level / 255 >= t - 1e-12 and (level - 1) / 255 < t


def _evaluate(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["-q", "evaluate", *args])
    return result.exit_code, result.output


def test_the_command_in_scene_mode(untrained_bundle: Path, hand_made: Path, tmp_path: Path) -> None:
    code, output = _evaluate(
        "--model", str(untrained_bundle), "--scenes", str(hand_made), "--names", "S2", "--out", str(tmp_path),
        "--set", "merge_distance_px=2",
    )  # fmt: skip
    assert code == 0, output
    assert "scene S2:" in output and "whole scenes (1):" in output
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics) == {"whole_scene"} and metrics["whole_scene"]["level"] == "whole_scene"
    block = metrics["whole_scene"]
    assert block["scenes"] == ["S2"] and block["merge_distance_px"] == 2
    assert {"overall", "per_scene", "sweep", "match"} <= set(block)
    assert (tmp_path / "scene_curve.png").is_file() and (tmp_path / "quicklooks" / "S2.png").is_file()
    code, output = _evaluate("--model", str(untrained_bundle), "--out", str(tmp_path))
    assert code == 2 and "--data PATCHES" in output


def test_the_command_with_patches_and_scenes_measures_the_split_scenes(
    untrained_bundle: Path, scenes_dir: Path, tmp_path: Path
) -> None:
    patches = tmp_path / "patches"
    assert all(o.status == "done" for o in tile_folder(scenes_dir, patches, TileConfig(seed=3, workers=1)))
    test_scenes = sorted({r.scene for r in read_manifest(patches / "manifest.csv") if r.split == "test"})
    code, output = _evaluate(
        "--model", str(untrained_bundle), "--data", str(patches), "--scenes", str(scenes_dir), "--out", str(tmp_path / "eval"),
    )  # fmt: skip
    assert code == 0, output
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["level"] == "patch" and "object" in metrics and "fp_by_kind" in metrics
    assert metrics["whole_scene"]["level"] == "whole_scene"
    assert metrics["whole_scene"]["scenes"] == test_scenes
    assert (tmp_path / "eval" / "pr_curve.png").is_file() and (
        tmp_path / "eval" / "scene_curve.png"
    ).is_file()


def test_the_pure_modules_import_no_tensorflow() -> None:
    import subprocess

    code = (
        "import sys, training.scene_eval, tiling.fragments; "
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
