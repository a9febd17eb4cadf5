"""A rejected detection becomes a ``reviewed`` training patch: `impacts tile add-reviewed`
through the real CLI, then read back by the training input pipeline."""

from __future__ import annotations

import csv
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from rasterio.windows import Window

from impacts.cli import main
from tiling.patchset import read_manifest

from ..conftest import copy_scenes

COLUMNS = "detection_id,scene,row_min,col_min,row_max,col_max,score,model_version,reason,analyst,decided_at"
FRESH = "B99_000000_0000_XN_00N000W"  # a scene without a mask, so never tiled: not in the manifest


@dataclass
class Reviewed:
    scenes: Path
    patches: Path
    csv: Path
    before: list[str]  # manifest lines before the run
    output: str
    by_split: dict[str, list[str]]
    boxes: dict[
        str, tuple[str, int, int, int, int]
    ]  # detection id -> (scene, row_min, col_min, row_max, col_max)


def _invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["-q", "tile", *args])
    return result.exit_code, result.output


def _crater(scenes: Path, scene: str) -> tuple[int, int, int, int]:
    """Box of the scene's first planted look-alike crater: what a model wrongly detects."""
    rows = list(csv.DictReader((scenes / f"{scene}_objects.csv").open()))
    o = next(o for o in rows if o["kind"] == "crater")
    r, c, rad = float(o["row"]), float(o["col"]), float(o["radius_px"])
    return max(0, int(r - rad)), max(0, int(c - rad)), min(899, int(r + rad)), min(699, int(c + rad))


@pytest.fixture(scope="module")
def reviewed(scenes_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Reviewed:
    root = tmp_path_factory.mktemp("reviewed")
    scenes = copy_scenes(scenes_dir, root / "scenes")
    code, output = _invoke(
        "--scenes", str(scenes), "--out", str(root / "patches"), "--seed", "3", "--workers", "1"
    )
    assert code == 0, output
    patches = root / "patches"
    before = (patches / "manifest.csv").read_text().splitlines()
    by_split: dict[str, list[str]] = {}
    for r in read_manifest(patches / "manifest.csv"):
        if r.scene not in by_split.get(r.split, []):
            by_split.setdefault(r.split, []).append(r.scene)
    train, val, test = by_split["train"][0], by_split["val"][0], by_split["test"][0]
    shutil.copy2(scenes / f"{train}.tif", scenes / f"{FRESH}.tif")
    boxes = {
        f"{train}-00003": (train, *_crater(scenes, train)),  # a crater taken for an impact
        "41": (train, 880, 690, 899, 699),  # in the scene's corner: the patch is clamped
        "42": (by_split["train"][1], 100, 100, 399, 299),  # larger than a patch
        "43": (FRESH, 10, 10, 20, 20),  # a new scene (no mask: all-zero mask)
        "44": (val, 10, 10, 20, 20),
        "45": (test, 10, 10, 20, 20),
        "46": ("B00_gone", 10, 10, 20, 20),
    }
    lines = [COLUMNS]
    for k, (det, (scene, *box)) in enumerate([*boxes.items(), (f"{train}-00003", boxes[f"{train}-00003"])]):
        lines.append(
            f"{det},{scene},{','.join(map(str, box))},{0.9 - k / 100:.2f},unet-r1,shadow,ana,2024-05-01T10:00:00Z"
        )
    path = root / "hard_negatives.csv"
    path.write_text("\n".join(lines) + "\n")
    code, output = _invoke("add-reviewed", str(path), "--scenes", str(scenes), "--out", str(patches))
    assert code == 0, output
    return Reviewed(scenes, patches, path, before, output, by_split, boxes)


def test_run_counts_added_and_skipped_rows(reviewed: Reviewed) -> None:
    assert "added=4 skipped_val_test=2 skipped_existing=1 missing_scene=1" in reviewed.output
    assert f"new scenes (not in the manifest, taken as train): {FRESH}" in reviewed.output
    run = json.loads((reviewed.patches / "reviewed.json").read_text())[-1]
    counts = {k: run[k] for k in ("added", "skipped_val_test", "skipped_existing", "missing_scene")}
    assert counts == {"added": 4, "skipped_val_test": 2, "skipped_existing": 1, "missing_scene": 1}
    assert {s["detection_id"] for s in run["skipped"]} == {
        "44",
        "45",
        "46",
        f"{reviewed.by_split['train'][0]}-00003",
    }


def test_rejection_is_a_reviewed_train_patch_with_the_scene_pixels(reviewed: Reviewed) -> None:
    from tiling.patchset import NEGATIVE_KINDS, PatchSet
    from training.data import records_dataset

    patches = PatchSet.load(reviewed.patches)
    lines = (reviewed.patches / "manifest.csv").read_text().splitlines()
    assert lines[: len(reviewed.before)] == reviewed.before, "the tiled rows changed"
    train_negatives = {r.patch_id: r for r in patches.select("train", NEGATIVE_KINDS)}
    added = [r for r in patches.records if r.kind == "reviewed"]
    assert {r.patch_id for r in added} == {f"reviewed-{d}" for d in list(reviewed.boxes)[:4]}
    assert all(r.patch_id in train_negatives and r.split == "train" for r in added)
    assert all(r.model_version == "unet-r1" and 0.8 < r.score <= 0.9 and r.height == 128 for r in added)
    seen = 0
    for ex in records_dataset(patches, added).as_numpy_iterator():
        record = train_negatives[ex["patch_id"].decode()]
        scene, row_min, col_min, row_max, col_max = reviewed.boxes[record.patch_id.removeprefix("reviewed-")]
        window = Window(record.col, record.row, 128, 128)
        assert 0 <= record.row <= 900 - 128 and 0 <= record.col <= 700 - 128
        if row_max - row_min < 128 and col_max - col_min < 128:
            assert record.row <= row_min and row_max < record.row + 128
            assert record.col <= col_min and col_max < record.col + 128
        with rasterio.open(reviewed.scenes / f"{scene}.tif") as ds:
            expected = ds.read(1, window=window)
        assert np.array_equal(np.rint(ex["image"][..., 0] * 255).astype(np.uint8), expected)
        mask_path = reviewed.scenes / f"{scene}_mask.tif"
        if mask_path.is_file():
            with rasterio.open(mask_path) as ds:
                expected_mask = ds.read(1, window=window) != 0
        else:
            expected_mask = np.zeros((128, 128), bool)
        assert np.array_equal(ex["mask"][..., 0] != 0, expected_mask)
        assert record.impact_fraction == pytest.approx(expected_mask.mean(), abs=1e-5)
        assert record.nodata_fraction == pytest.approx(np.mean(expected == 0), abs=1e-5)
        seen += 1
    assert seen == 4
    corner = train_negatives["reviewed-41"]
    assert (corner.row, corner.col) == (900 - 128, 700 - 128)


def test_val_and_test_are_untouched(reviewed: Reviewed) -> None:
    records = read_manifest(reviewed.patches / "manifest.csv")
    eval_scenes = set(reviewed.by_split["val"] + reviewed.by_split["test"])
    assert not [r for r in records if r.kind == "reviewed" and r.scene in eval_scenes]
    assert not [r for r in records if r.patch_id in ("reviewed-44", "reviewed-45", "reviewed-46")]
    assert {r.split for r in records if r.scene in eval_scenes} <= {"val", "test"}


def test_bad_input_is_one_clear_error_and_changes_nothing(reviewed: Reviewed, tmp_path: Path) -> None:
    manifest = (reviewed.patches / "manifest.csv").read_bytes()
    shards = sorted((reviewed.patches / "reviewed").iterdir())
    bad = tmp_path / "bad.csv"
    scenes, patches = str(reviewed.scenes), str(reviewed.patches)
    bad.write_text(f"{COLUMNS}\n1,../../etc/passwd,1,1,2,2,0.5,v,,,\n")
    code, output = _invoke("add-reviewed", str(bad), "--scenes", scenes, "--out", patches)
    assert code == 1 and f"{bad}, line 2: scene '../../etc/passwd' is not a scene name" in output
    train = reviewed.by_split["train"][0]
    bad.write_text(f"{COLUMNS}\n2,{train},1,1,2,2,0.5,v,,,\n3,{train},1,1,950,2,0.5,v,,,\n")
    code, output = _invoke("add-reviewed", str(bad), "--scenes", scenes, "--out", patches)
    assert code == 1 and f"{bad}, line 3: box rows 1..950" in output and "does not fit scene" in output
    code, output = _invoke("add-reviewed", str(bad), "--scenes", scenes, "--out", str(tmp_path / "none"))
    assert code == 1 and "is not a patch set" in output and "impacts tile --scenes" in output
    code, output = _invoke("add-reviewed", str(bad), "--scenes", scenes, "--out", patches, "--seed", "1")
    assert code == 2 and "No such option" in output and "--seed" in output
    assert (reviewed.patches / "manifest.csv").read_bytes() == manifest
    assert sorted((reviewed.patches / "reviewed").iterdir()) == shards


def test_second_run_adds_nothing_and_a_retile_loses_nothing(reviewed: Reviewed) -> None:
    manifest = (reviewed.patches / "manifest.csv").read_bytes()
    args = (
        "add-reviewed",
        str(reviewed.csv),
        "--scenes",
        str(reviewed.scenes),
        "--out",
        str(reviewed.patches),
    )
    code, output = _invoke(*args)
    assert code == 0 and "added=0 skipped_val_test=2 skipped_existing=5 missing_scene=1" in output
    assert (reviewed.patches / "manifest.csv").read_bytes() == manifest
    # Re-running the tiler rebuilds manifest.csv from the scene parts; the next add-reviewed
    # run puts the reviewed rows back from reviewed/manifest.csv, unchanged.
    code, output = _invoke(
        "--scenes", str(reviewed.scenes), "--out", str(reviewed.patches), "--seed", "3", "--workers", "1"
    )
    assert code == 0, output
    assert "reviewed-" not in (reviewed.patches / "manifest.csv").read_text()
    code, output = _invoke(*args)
    assert code == 0 and "added=0" in output and "restored=4" in output
    assert (reviewed.patches / "manifest.csv").read_bytes() == manifest


def test_the_deprecated_reviewed_flag_does_the_same_and_names_the_new_command(reviewed: Reviewed) -> None:
    manifest = (reviewed.patches / "manifest.csv").read_bytes()
    where = ("--scenes", str(reviewed.scenes), "--out", str(reviewed.patches))
    code, new = _invoke("add-reviewed", str(reviewed.csv), *where)
    assert code == 0, new
    code, old = _invoke("--reviewed", str(reviewed.csv), *where)
    assert code == 0, old
    warnings = [line for line in old.splitlines() if "deprecated" in line]
    assert warnings == [
        "Warning: `impacts tile --reviewed FILE` is deprecated; "
        "use `impacts tile add-reviewed FILE --scenes DIR --out DIR`."
    ]
    assert [line for line in old.splitlines() if line not in warnings] == new.splitlines()
    assert (reviewed.patches / "manifest.csv").read_bytes() == manifest
