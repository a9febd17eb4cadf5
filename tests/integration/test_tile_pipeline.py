"""From `impacts synth` scenes to a loaded patch set, through the real CLI."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from rasterio.windows import Window

from impacts.cli import main
from tiling.patchset import read_manifest
from tiling.tfrecord import decode_example, read_record_at

from ..conftest import copy_scenes


def _tile(scenes: Path, out: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        main, ["-q", "tile", "--scenes", str(scenes), "--out", str(out), "--workers", "1", *args]
    )
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def patch_set(scenes_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("patches")
    code, output = _tile(scenes_dir, out, "--seed", "3")
    assert code == 0, output
    return out


def test_splits_are_by_scene_and_train_is_balanced_with_a_pool(patch_set: Path) -> None:
    records = read_manifest(patch_set / "manifest.csv")
    split_of: dict[str, set[str]] = {}
    for r in records:
        split_of.setdefault(r.scene, set()).add(r.split)
    assert all(len(s) == 1 for s in split_of.values()), "a scene in two splits"
    assert {next(iter(s)) for s in split_of.values()} == {"train", "val", "test"}
    train = [r for r in records if r.split == "train"]
    positives = sum(r.kind == "positive" for r in train)
    assert positives > 0 and positives == sum(r.kind == "negative" for r in train)
    assert sum(r.kind == "pool" for r in train) > positives
    assert not any(r.kind == "pool" for r in records if r.split != "train")
    assert all(r.impact_fraction > 0 for r in records if r.kind == "positive")
    assert all(r.impact_fraction == 0 and r.nodata_fraction <= 0.5 for r in records if r.kind != "positive")
    assert any(r.nodata_fraction > 0 for r in records if r.kind == "negative"), "no border negatives kept"


def test_every_impact_gets_its_crops_whole(patch_set: Path, scenes_dir: Path) -> None:
    records = read_manifest(patch_set / "manifest.csv")
    for scene in {r.scene for r in records if r.split == "train"}:
        objects = list(csv.DictReader((scenes_dir / f"{scene}_objects.csv").open()))
        impacts = [(float(o["row"]), float(o["col"])) for o in objects if o["kind"] == "impact"]
        crops = [r for r in records if r.scene == scene and r.kind == "positive"]
        assert len(crops) == 4 * len(impacts)
        for row, col in impacts:
            around = [c for c in crops if c.row <= row < c.row + 128 and c.col <= col < c.col + 128]
            assert len(around) >= 4


def test_records_hold_the_scene_pixels_at_their_window(patch_set: Path, scenes_dir: Path) -> None:
    records = read_manifest(patch_set / "manifest.csv")
    rng = np.random.default_rng(0)
    for r in (records[i] for i in rng.choice(len(records), 25, replace=False)):
        example = decode_example(read_record_at(patch_set / r.shard, r.offset))
        assert example["patch_id"] == r.patch_id.encode()
        image = np.frombuffer(example["image"], np.uint8).reshape(128, 128)
        mask = np.frombuffer(example["mask"], np.uint8).reshape(128, 128)
        window = Window(r.col, r.row, 128, 128)
        with rasterio.open(scenes_dir / f"{r.scene}.tif") as ds:
            assert np.array_equal(image, ds.read(1, window=window))
        with rasterio.open(scenes_dir / f"{r.scene}_mask.tif") as ds:
            assert np.array_equal(mask, ds.read(1, window=window) != 0)
        assert mask.mean() == pytest.approx(r.impact_fraction, abs=1e-5)


def test_same_inputs_and_seed_give_the_same_manifest(
    patch_set: Path, scenes_dir: Path, tmp_path: Path
) -> None:
    code, output = _tile(scenes_dir, tmp_path / "again", "--seed", "3")
    assert code == 0, output
    assert (tmp_path / "again" / "manifest.csv").read_text() == (patch_set / "manifest.csv").read_text()
    run = json.loads((patch_set / "run.json").read_text())
    assert run["seed"] == 3 and run["config"]["patch_px"] == 128 and run["version"] and run["git_revision"]


def test_named_test_scenes_are_honoured(scenes_dir: Path, tmp_path: Path) -> None:
    names = sorted(p.stem for p in scenes_dir.glob("*[0-9]W.tif"))[:2]
    code, output = _tile(scenes_dir, tmp_path, "--test-scenes", ",".join(names))
    assert code == 0, output
    records = read_manifest(tmp_path / "manifest.csv")
    assert {r.scene for r in records if r.split == "test"} == set(names)


def test_an_interrupted_run_resumes_per_scene(scenes_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "patches"
    assert _tile(scenes_dir, out)[0] == 0
    first = (out / "manifest.csv").read_text()
    victim = sorted((out / "parts").iterdir())[1]
    shutil.rmtree(victim)  # as if killed before this scene finished...
    (out / "parts" / f".{victim.name}.partial").mkdir()  # ...while writing it
    (out / "manifest.csv").unlink()
    code, _ = _tile(scenes_dir, out)
    assert code == 0
    summary = {s["scene"]: s["status"] for s in json.loads((out / "summary.json").read_text())}
    assert summary.pop(victim.name) == "done"
    assert set(summary.values()) == {"resumed"}
    assert (out / "manifest.csv").read_text() == first
    assert not list((out / "parts").glob(".*.partial"))


def test_a_truncated_part_marker_means_the_scene_is_tiled_again(scenes_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "patches"
    assert _tile(scenes_dir, out)[0] == 0
    first = (out / "manifest.csv").read_text()
    victim = sorted((out / "parts").iterdir())[2]
    meta = victim / "part.json"
    meta.write_text(meta.read_text()[:25])  # cut short, as by a full disk
    code, output = _tile(scenes_dir, out)
    assert code == 0 and "Traceback" not in output, output
    summary = {s["scene"]: s["status"] for s in json.loads((out / "summary.json").read_text())}
    assert summary.pop(victim.name) == "done" and set(summary.values()) == {"resumed"}
    assert (out / "manifest.csv").read_text() == first
    assert json.loads(meta.read_text())["scene"] == victim.name


def _write(path: Path, array: np.ndarray, like: Path, **changes: object) -> None:
    with rasterio.open(like) as src:
        profile = {**src.profile, "count": array.shape[0], "dtype": array.dtype.name, **changes}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array)


def test_bad_scenes_are_reported_and_the_others_go_on(scenes_dir: Path, tmp_path: Path) -> None:
    scenes = copy_scenes(scenes_dir, tmp_path / "scenes")
    good = sorted(p for p in scenes.glob("*[0-9]W.tif"))
    template = good[0]
    # 1: no mask; 2: truncated image; 3: three bands; 4: mask on another grid
    good[1].with_name(good[1].stem + "_mask.tif").unlink()
    data = good[2].read_bytes()
    good[2].write_bytes(data[: len(data) // 3])
    _write(
        scenes / "X01_000001_1800_XI_00N001W.tif",
        np.ones((3, 300, 300), np.uint8),
        template,
        width=300,
        height=300,
    )
    _write(
        scenes / "X01_000001_1800_XI_00N001W_mask.tif",
        np.zeros((1, 300, 300), np.uint8),
        template,
        width=300,
        height=300,
    )
    _write(
        scenes / "X02_000002_1800_XI_00N002W.tif",
        np.ones((1, 300, 300), np.uint8),
        template,
        width=300,
        height=300,
    )
    _write(
        scenes / "X02_000002_1800_XI_00N002W_mask.tif",
        np.zeros((1, 200, 300), np.uint8),
        template,
        width=300,
        height=200,
    )
    _write(
        scenes / "X03_000003_1800_XI_00N003W.tif",
        np.ones((1, 300, 300), np.float32),
        template,
        width=300,
        height=300,
        nodata=None,
    )
    _write(
        scenes / "X03_000003_1800_XI_00N003W_mask.tif",
        np.zeros((1, 300, 300), np.uint8),
        template,
        width=300,
        height=300,
    )
    (scenes / "X04_000004_1800_XI_00N004W.tif").write_bytes(b"not a tiff at all")
    shutil.copy(
        template.with_name(template.stem + "_mask.tif"), scenes / "X04_000004_1800_XI_00N004W_mask.tif"
    )

    code, output = _tile(scenes, tmp_path / "out")
    assert code == 1
    status = {
        s["scene"]: (s["status"], s["message"])
        for s in json.loads((tmp_path / "out" / "summary.json").read_text())
    }
    assert status[good[1].stem][0] == "skipped" and "_mask.tif" in status[good[1].stem][1]
    assert status[good[2].stem][0] == "failed" and good[2].name in status[good[2].stem][1]
    assert (
        status["X01_000001_1800_XI_00N001W"][0] == "failed"
        and "3 bands" in status["X01_000001_1800_XI_00N001W"][1]
    )
    assert (
        status["X02_000002_1800_XI_00N002W"][0] == "failed"
        and "resample the mask" in status["X02_000002_1800_XI_00N002W"][1]
    )
    # A float32 product is a scene now, stretched to uint16 (tiling/pixels.py); a patch set
    # holding it beside uint8 scenes is refused by PatchSet.load, naming it (test_patchset).
    assert status["X03_000003_1800_XI_00N003W"][0] == "done"
    part = json.loads((tmp_path / "out" / "parts" / "X03_000003_1800_XI_00N003W" / "part.json").read_text())
    assert part["dtype"] == "uint16"
    assert (
        status["X04_000004_1800_XI_00N004W"][0] == "failed"
        and "does not read it as a GeoTIFF" in status["X04_000004_1800_XI_00N004W"][1]
        and "gdal_translate" in status["X04_000004_1800_XI_00N004W"][1]
    )
    ok = {name for name, (s, _) in status.items() if s == "done"}
    assert ok == {good[0].stem, good[3].stem, good[4].stem, "X03_000003_1800_XI_00N003W"}
    # X03 is a test scene without impacts: no patch of its own.
    assert {r.scene for r in read_manifest(tmp_path / "out" / "manifest.csv")} == ok - {
        "X03_000003_1800_XI_00N003W"
    }
    assert "Traceback" not in output and "scenes failed" in output
    assert not list((tmp_path / "out" / "parts").glob(".*"))


def test_empty_or_missing_folder_is_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    for folder in (tmp_path / "empty", tmp_path / "missing"):
        code, output = _tile(folder, tmp_path / "out")
        assert code == 1
        lines = output.strip().splitlines()
        assert len(lines) == 1 and str(folder) in lines[0] and "Traceback" not in output


def test_job_array_elements_then_merge_equal_one_run(
    patch_set: Path, scenes_dir: Path, tmp_path: Path
) -> None:
    n = len(list(scenes_dir.glob("*[0-9]W.tif")))
    for index in range(1, n + 1):
        code, output = _tile(scenes_dir, tmp_path, "--seed", "3", "--array-index", str(index))
        assert code == 0, output
        assert not (tmp_path / "manifest.csv").exists()
    result = CliRunner().invoke(
        main, ["-q", "tile", "merge", "--scenes", str(scenes_dir), "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "manifest.csv").read_text() == (patch_set / "manifest.csv").read_text()
    # The flag it replaces still merges, for one release, and says what to use instead.
    (tmp_path / "manifest.csv").unlink()
    code, output = _tile(scenes_dir, tmp_path, "--seed", "3", "--merge-only")
    assert code == 0, output
    assert "`impacts tile --merge-only` is deprecated; use `impacts tile merge" in output
    assert (tmp_path / "manifest.csv").read_text() == (patch_set / "manifest.csv").read_text()
