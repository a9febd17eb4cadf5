"""``impacts synth --before``: each scene's earlier image on another grid, and its truth."""

from __future__ import annotations

import hashlib
import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from pydantic import ValidationError
from rasterio.warp import Resampling, reproject
from scipy import ndimage

from impacts.cli import main
from impacts.errors import SceneError
from tiling.config import BeforeConfig, SynthConfig
from tiling.crs import crs_code
from tiling.synth import load_objects, scene_spec, scene_transform, synth_scenes
from tiling.synth_before import BeforeTruth, load_before_truth, write_before

SIZE = (700, 600)


def _write(out: Path, difficulty: str, seed: int = 3, count: int = 2) -> Path:
    cfg = SynthConfig(count=count, seed=seed, size=SIZE, difficulty=difficulty, before={"enabled": True})
    synth_scenes(out, cfg)
    return out


@pytest.fixture(scope="module")
def before_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two 700 x 600 scenes with earlier images per difficulty; do not modify them."""
    return {d: _write(tmp_path_factory.mktemp(d), d) for d in ("medium", "hard", "realistic")}


def _scenes(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.glob("*[0-9]W.tif"))


def _warped(folder: Path, name: str, registered: bool) -> tuple[np.ndarray, np.ndarray, BeforeTruth]:
    """The scene and its earlier image warped onto the scene's grid (float), and the truth;
    ``registered`` undoes the planted shift."""
    truth = load_before_truth(folder / f"{name}_before.json")
    with rasterio.open(folder / f"{name}.tif") as ds:
        scene, transform, crs = ds.read(1).astype(np.float64), ds.transform, ds.crs
    with rasterio.open(folder / truth.file_name) as ds:
        before = ds.read(1)
    warped = np.zeros(scene.shape, np.float32)
    reproject(
        before,
        warped,
        src_transform=truth.registered_transform if registered else truth.affine,
        src_crs=crs,
        dst_transform=transform,
        dst_crs=crs,
        src_nodata=0,
        dst_nodata=0,
        resampling=Resampling.bilinear,
    )
    return scene, warped.astype(np.float64), truth


def _disc(shape: tuple[int, ...], row: float, col: float, radius: float) -> np.ndarray:
    rows, cols = np.ogrid[: shape[0], : shape[1]]
    return np.hypot(rows - row, cols - col) < radius


def test_every_scene_gets_an_earlier_image_on_another_grid_that_covers_it(
    before_dirs: dict[str, Path],
) -> None:
    for folder in before_dirs.values():
        names = _scenes(folder)
        assert len(names) == 2
        for name in names:
            truth = load_before_truth(folder / f"{name}_before.json")
            with (
                rasterio.open(folder / f"{name}.tif") as scene,
                rasterio.open(folder / truth.file_name) as ds,
            ):
                assert truth.file_name == f"{name}_before.tif"
                assert ds.crs == scene.crs and crs_code(ds.crs) == truth.crs == "IAU_2015:49910"
                assert ds.transform == truth.affine and (ds.height, ds.width) == (truth.height, truth.width)
                assert ds.res[0] == ds.res[1] == truth.res_m and 5.0 <= truth.res_m <= 7.0
                assert ds.res != scene.res and ds.transform != scene.transform
                assert (ds.dtypes[0], ds.nodata) == ("uint8", 0)
                # The grid reaches beyond the scene's on every side, by about the margin.
                sb, bb = scene.bounds, ds.bounds
                margin_m = 32 * 6.0
                assert bb.left <= sb.left - margin_m and bb.right >= sb.right + margin_m
                assert bb.bottom <= sb.bottom - margin_m and bb.top >= sb.top + margin_m
                assert bb.right - sb.right < margin_m + 2 * truth.res_m
            image, warped, _ = _warped(folder, name, registered=False)
            assert np.all(warped[image > 0] > 0), "the earlier image covers every valid scene pixel"
            assert np.any(warped == 0) or np.any(image == 0)


def test_registered_earlier_image_keeps_the_look_alikes_and_lacks_the_new_impacts(
    before_dirs: dict[str, Path],
) -> None:
    for difficulty, folder in before_dirs.items():
        for name in _scenes(folder):
            scene, warped, truth = _warped(folder, name, registered=True)
            objects = load_objects(folder / f"{name}_objects.csv")
            impacts = [o for o in objects if o.kind == "impact"]
            assert len(truth.absent_ids) == len(impacts) >= 1
            changed = np.zeros(scene.shape, bool)
            for o in impacts:
                changed |= _disc(scene.shape, o.row, o.col, 2.7 * o.radius_px + 2)
            for f in truth.faded:
                changed |= _disc(scene.shape, f.row, f.col, 2.7 * f.radius_px + 2)
            both = (scene > 0) & (warped > 0) & ~changed
            assert np.corrcoef(scene[both], warped[both])[0, 1] > 0.8, (difficulty, name)
            lookalike = np.zeros(scene.shape, bool)
            for o in objects:
                if o.kind != "impact":
                    lookalike |= _disc(scene.shape, o.row, o.col, o.radius_px)
            assert np.corrcoef(scene[lookalike & both], warped[lookalike & both])[0, 1] > 0.7
            # Another gain and brightness: compare through the straight line that maps one on the other.
            gain, offset = np.polyfit(warped[both], scene[both], 1)
            residual = scene - (gain * warped + offset)
            at_impacts = [
                (residual[_disc(scene.shape, o.row, o.col, max(1.5, 0.3 * o.radius_px))].mean(), o.contrast)
                for o in impacts
            ]
            for value, contrast in at_impacts:
                if difficulty != "realistic" or (contrast or 0) >= 0.2:
                    assert value < -10, f"{name}: a new impact is not darker in the scene only"
            for f in truth.faded:
                value = residual[_disc(scene.shape, f.row, f.col, max(1.5, 0.3 * f.radius_px))].mean()
                if f.contrast >= 0.2:
                    assert value > 10, f"{name}: a faded old impact is not darker in the earlier image"
    faded = sum(len(load_before_truth(p).faded) for d in before_dirs.values() for p in d.glob("*.json"))
    assert faded >= 1


def test_the_planted_misregistration_is_where_the_images_match_best(before_dirs: dict[str, Path]) -> None:
    folder = before_dirs["hard"]
    for name in _scenes(folder):
        scene, warped, truth = _warped(folder, name, registered=False)
        assert 1.0 <= abs(truth.shift_row_px) <= 4.0 and 1.0 <= abs(truth.shift_col_px) <= 4.0
        # High-pass both (the terrain's broad swells match at any small offset).
        fine_scene = scene - ndimage.gaussian_filter(scene, 3)
        fine_before = warped - ndimage.gaussian_filter(warped, 3)
        core = (slice(222, 478), slice(172, 428))  # 256 x 256 px in the middle
        scores = {}
        for dr in range(-5, 6):
            for dc in range(-5, 6):
                moved = np.roll(fine_before, (-dr, -dc), axis=(0, 1))
                scores[dr, dc] = np.corrcoef(fine_scene[core].ravel(), moved[core].ravel())[0, 1]
        best = max(scores, key=lambda k: scores[k])
        assert abs(best[0] - truth.shift_row_px) <= 1 and abs(best[1] - truth.shift_col_px) <= 1, best


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_same_seed_same_bytes_and_the_scenes_do_not_change(tmp_path: Path) -> None:
    cfg = SynthConfig(count=2, seed=9, size=(512, 400), difficulty="hard", window_px=256)
    with_before = cfg.model_copy(update={"before": BeforeConfig(enabled=True)})
    synth_scenes(tmp_path / "a", with_before)
    synth_scenes(tmp_path / "b", with_before)
    synth_scenes(tmp_path / "plain", cfg)
    a, plain = _digests(tmp_path / "a"), _digests(tmp_path / "plain")
    assert a == _digests(tmp_path / "b")
    assert {k: v for k, v in a.items() if "_before" not in k} == plain
    assert sum("_before" in k for k in a) == 4
    other = cfg.model_copy(update={"seed": 10, "before": BeforeConfig(enabled=True)})
    synth_scenes(tmp_path / "c", other)
    befores = {v for k, v in a.items() if k.endswith("_before.tif")}
    assert befores.isdisjoint(v for k, v in _digests(tmp_path / "c").items() if k.endswith("_before.tif"))


def _peak_bytes(tmp_path: Path, size: tuple[int, int]) -> int:
    cfg = SynthConfig(
        seed=1,
        size=size,
        difficulty="realistic",
        window_px=256,
        before={"enabled": True, "res_m": (5.0, 5.0)},
    )
    name, spec = scene_spec(cfg, 0)
    transform = scene_transform(name, spec.height, spec.width, cfg.res_m)
    tracemalloc.start()
    try:
        write_before(tmp_path, name.text, spec, transform, cfg, 0)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.slow
def test_earlier_images_are_written_in_bounded_memory(tmp_path: Path) -> None:
    small = _peak_bytes(tmp_path, (500, 500))
    large = _peak_bytes(tmp_path, (1500, 1500))  # 9 times the pixels, 3.2 Mpx at 5 m/px
    assert large < 1.5 * small + 4e6, (small, large)


def test_cli_before_flag_writes_earlier_images_and_records_the_setting(tmp_path: Path) -> None:
    out = tmp_path / "s"
    args = ["-q", "synth", "--out", str(out), "--count", "1", "--size", "400x300", "--before"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "run.json").read_text())["config"]["before"]["enabled"] is True
    (truth_file,) = out.glob("*_before.json")
    assert (out / load_before_truth(truth_file).file_name).is_file()
    assert "_before.tif" in result.output and "shift=" in result.output
    plain = CliRunner().invoke(main, ["-q", "synth", "--out", str(tmp_path / "p"), "--count", "1"])
    assert plain.exit_code == 0 and not list((tmp_path / "p").glob("*_before*"))


def test_before_settings_are_checked_and_a_bad_truth_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="margin_px"):
        BeforeConfig(margin_px=8, shift_px=(1.0, 4.0))
    with pytest.raises(ValidationError, match="res_m"):
        BeforeConfig(res_m=(7.0, 5.0))
    bad = tmp_path / "x_before.json"
    bad.write_text('{"scene": "x"}')
    with pytest.raises(SceneError, match="impacts synth --before"):
        load_before_truth(bad)
