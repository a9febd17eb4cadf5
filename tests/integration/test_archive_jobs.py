"""The whole archive as one job: chunked array elements over a scene list, resumed after a
kill, summarized, and resubmitted with the line the summary prints."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from impacts.chunks import Chunking
from impacts.cli import main
from tests.conftest import copy_scenes
from tests.integration.test_jobs import REPO
from tiling.patchset import read_manifest


def _names(scenes: Path) -> list[str]:
    return sorted(p.stem for p in scenes.glob("*.tif") if not p.stem.endswith("_mask"))


def _scene_list(path: Path, scenes: Path, ghost_at: int | None = None) -> Path:
    """A list of the scenes' absolute paths, with ``ghost.tif`` (no such file) inserted at
    0-based position ``ghost_at``."""
    lines = [str(scenes / f"{n}.tif") for n in _names(scenes)]
    if ghost_at is not None:
        lines.insert(ghost_at, str(scenes / "ghost.tif"))
    path.write_text("# test scenes\n" + "\n".join(lines) + "\n")
    return path


def _impacts(*args: str) -> Result:
    return CliRunner().invoke(main, ["-q", *args], catch_exceptions=False)


def _summary(scene_list: Path, out: Path, *args: str) -> Result:
    return _impacts("jobs", "summary", "--scene-list", str(scene_list), "--out", str(out), *args)


def test_chunked_predict_element_killed_then_resubmitted_with_the_summary_line(
    scenes_dir: Path, untrained_bundle: Path, tmp_path: Path
) -> None:
    scene_list = _scene_list(tmp_path / "ctx.txt", scenes_dir)
    names = _names(scenes_dir)  # 5 scenes in 2 elements: lines 0-1 and 2-4
    out = tmp_path / "pred"
    env = {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "SCENE_LIST": str(scene_list),
        "MODEL": str(untrained_bundle),
        "PREDICTIONS": str(out),
        "ARRAY_SIZE": "2",
    }
    first = subprocess.run(
        ["bash", "jobs/predict.bsub"],
        cwd=REPO,
        env={**env, "LSB_JOBINDEX": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert first.returncode == 0, first.stderr[-2000:]
    assert sorted(p.name for p in out.glob("*_predict.json")) == [f"{n}_predict.json" for n in names[:2]]

    # Element 2 is killed (SIGKILL to its process group, as LSF does at the wall time)
    # once its first scene is finished.
    element = subprocess.Popen(
        ["bash", "jobs/predict.bsub"],
        cwd=REPO,
        env={**env, "LSB_JOBINDEX": "2"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    while not (out / f"{names[2]}_predict.json").is_file():
        assert element.poll() is None, "element 2 ended before it could be killed"
        assert time.monotonic() < deadline, "element 2 never finished its first scene"
        time.sleep(0.01)
    os.killpg(element.pid, signal.SIGKILL)
    element.wait(timeout=60)
    assert not (out / f"{names[4]}_predict.json").exists(), "killed before its last scene"

    summary = _summary(scene_list, out, "--array-size", "2", "--model", str(untrained_bundle))
    assert summary.exit_code == 1, summary.output
    done = sum(1 for n in names if (out / f"{n}_predict.json").is_file())
    assert f"done {done}  failed 0  skipped 0  missing {5 - done}" in summary.output
    resubmit = summary.output.strip().splitlines()[-1]
    assert resubmit == (
        f"SCENE_LIST={scene_list} PREDICTIONS={out} MODEL={untrained_bundle} ARRAY_SIZE=2 "
        'bsub -J "predict[2]" < jobs/predict.bsub'
    )

    # Run the resubmitted element as LSF would: the line's variables, each index of -J.
    words = shlex.split(resubmit.split(" bsub ")[0])
    resubmitted = dict(w.split("=", 1) for w in words)
    (indices,) = re.findall(r"predict\[(.+)\]", resubmit)
    again = subprocess.run(
        ["bash", "jobs/predict.bsub"],
        cwd=REPO,
        env={**env, **resubmitted, "LSB_JOBINDEX": indices},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert again.returncode == 0, again.stderr[-2000:]
    status = {
        line.split()[0]: line.split()[1] for line in again.stdout.splitlines() if line.split()[0] in names
    }
    assert status[names[2]] == "resumed" and status[names[3]] in ("done", "resumed")
    assert status[names[4]] == "done"
    final = _summary(scene_list, out, "--array-size", "2")
    assert final.exit_code == 0 and "done 5  failed 0  skipped 0  missing 0" in final.output
    assert "nothing to resubmit" in final.output
    # Array elements leave the folder's STAC Collection to the step after the array.
    assert not (out / "collection.json").exists()
    merged = _impacts("catalog", str(out), "--out", str(tmp_path / "impacts.gpkg"))
    assert merged.exit_code == 0, merged.output
    collection = json.loads((out / "collection.json").read_text())
    assert len([link for link in collection["links"] if link["rel"] == "item"]) == 5


def test_a_listed_scene_that_does_not_exist_fails_alone_and_the_summary_names_it(
    scenes_dir: Path, untrained_bundle: Path, tmp_path: Path
) -> None:
    scenes = copy_scenes(scenes_dir, tmp_path / "scenes")
    scene_list = _scene_list(tmp_path / "list.txt", scenes, ghost_at=2)  # line 4 of the file
    names = _names(scenes)
    out = tmp_path / "pred"
    predict = [
        "predict",
        "--model",
        str(untrained_bundle),
        "--scene-list",
        str(scene_list),
        "--out",
        str(out),
    ]
    # --chunk-size 2: element 2 holds list lines 2-3 (ghost and the third scene)
    result = CliRunner().invoke(main, ["-q", *predict, "--array-index", "2", "--chunk-size", "2"])
    assert result.exit_code == 1
    assert re.search(
        r"ghost\s+failed .*ghost\.tif does not exist; fix its line in the scene list", result.output
    )
    assert re.search(rf"{names[2]}\s+done", result.output), "the other scene of the element goes on"
    assert (out / "ghost_predict.failed.json").is_file()

    summary = _summary(scene_list, out, "--chunk-size", "2")
    assert summary.exit_code == 1
    assert "6 scenes of" in summary.output and "in 3 array elements (2 per element)" in summary.output
    assert "done 1  failed 1  skipped 0  missing 4" in summary.output
    assert re.search(r"failed: ghost \(line 4, element 2\): .*does not exist", summary.output)
    assert summary.output.strip().splitlines()[-1] == (
        f'SCENE_LIST={scene_list} PREDICTIONS={out} CHUNK_SIZE=2 bsub -J "predict[1-3]" < jobs/predict.bsub'
    )

    # The file turns up: the element succeeds and its failure record goes.
    (scenes / "ghost.tif").write_bytes((scenes / f"{names[0]}.tif").read_bytes())
    again = CliRunner().invoke(main, ["-q", *predict, "--array-index", "2", "--chunk-size", "2"])
    assert again.exit_code == 0, again.output
    assert not (out / "ghost_predict.failed.json").exists()
    assert "done 2  failed 0  skipped 0  missing 4" in _summary(scene_list, out, "--chunk-size", "2").output


def test_bad_array_inputs_are_one_clear_line(
    scenes_dir: Path, untrained_bundle: Path, tmp_path: Path
) -> None:
    scene_list = _scene_list(tmp_path / "list.txt", scenes_dir)
    predict = ["predict", "--model", str(untrained_bundle), "--out", str(tmp_path / "pred")]
    cases = [
        (
            [*predict, "--scene-list", str(tmp_path / "absent.txt"), "--array-index", "1"],
            "scene list .*absent.txt does not exist",
        ),
        (
            [*predict, "--scene-list", str(scene_list), "--array-index", "4", "--array-size", "3"],
            r"array index 4 is outside 1..3 \(5 scenes, in 3 chunks\); submit the array as \[1-3\]",
        ),
        (
            [*predict, "--scene-list", str(scene_list), "--array-index", "4", "--chunk-size", "2"],
            r"array index 4 is outside 1..3 \(5 scenes, 2 per element\)",
        ),
        (
            ["tile", "--scene-list", str(scene_list), "--out", str(tmp_path / "p"), "--array-index", "9"],
            r"array index 9 is outside 1..5",
        ),
        (
            [
                *predict,
                "--scene-list",
                str(scene_list),
                "--array-index",
                "1",
                "--array-size",
                "2",
                "--chunk-size",
                "2",
            ],
            "not both",
        ),
        ([*predict, "--scene-list", str(scene_list), "--array-size", "2"], "need --array-index"),
        (
            ["jobs", "summary", "--scene-list", str(tmp_path / "absent.txt"), "--out", str(tmp_path)],
            "does not exist",
        ),
    ]
    for args, message in cases:
        result = CliRunner().invoke(main, ["-q", *args])
        assert result.exit_code != 0, args
        errors = [line for line in result.output.splitlines() if line.startswith("Error")]
        assert len(errors) == 1 and re.search(message, errors[0]), (args, result.output)
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert not (tmp_path / "pred").exists(), "nothing was predicted"


def test_chunked_tile_elements_resume_merge_and_summarize(scenes_dir: Path, tmp_path: Path) -> None:
    scenes = copy_scenes(scenes_dir, tmp_path / "scenes")
    names = _names(scenes)
    (scenes / f"{names[1]}_mask.tif").unlink()  # tiled as "skipped", never resubmitted
    scene_list = _scene_list(tmp_path / "list.txt", scenes)
    patches = tmp_path / "patches"
    tile = ["tile", "--scene-list", str(scene_list), "--out", str(patches), "--workers", "1"]
    for index in ("1", "3"):  # element 2 (the third and fourth scene) never runs
        result = _impacts(*tile, "--array-index", index, "--chunk-size", "2")
        assert result.exit_code == 0, result.output  # a skipped scene is no failure
    summary = _summary(scene_list, patches, "--job", "tile", "--chunk-size", "2")
    assert "done 2  failed 0  skipped 1  missing 2" in summary.output
    assert re.search(rf"skipped: {names[1]} \(line 3, element 1\): .*mask", summary.output)
    assert summary.output.strip().splitlines()[-1] == (
        f'SCENE_LIST={scene_list} PATCHES={patches} CHUNK_SIZE=2 bsub -J "tile[2]" < jobs/tile.bsub'
    )
    again = _impacts(*tile, "--array-index", "1", "--chunk-size", "2")
    assert re.search(rf"{names[0]}\s+\w+\s+resumed", again.output), "a tiled scene is kept"
    assert _impacts(*tile, "--array-index", "2", "--chunk-size", "2").exit_code == 0
    merged = _impacts("tile", "merge", "--scene-list", str(scene_list), "--out", str(patches))
    assert merged.exit_code == 0, merged.output
    assert {r.scene for r in read_manifest(patches / "manifest.csv")} == set(names) - {names[1]}
    final = _summary(scene_list, patches, "--job", "tile", "--chunk-size", "2")
    assert final.exit_code == 0 and "done 4  failed 0  skipped 1  missing 0" in final.output


@pytest.mark.parametrize("chunking", [Chunking(array_size=2), Chunking(chunk_size=3)])
def test_elements_split_like_the_whole_folder(scenes_dir: Path, tmp_path: Path, chunking: Chunking) -> None:
    """Every element draws the splits from the whole list, as one run over the folder does."""
    from tiling.config import TileConfig
    from tiling.pipeline import tile_folder

    scene_list = _scene_list(tmp_path / "list.txt", scenes_dir)
    whole = {o.scene: o.split for o in tile_folder(scenes_dir, tmp_path / "whole", TileConfig(workers=1))}
    splits = {}
    for index in (1, 2):
        outcomes = tile_folder(
            None,
            tmp_path / "chunked",
            TileConfig(workers=1),
            index,
            scene_list=scene_list,
            chunking=chunking,
        )
        splits.update({o.scene: o.split for o in outcomes})
    assert splits == whole
