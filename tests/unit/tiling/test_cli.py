"""``impacts tile``, ``impacts tile merge``, ``impacts tile add-reviewed`` and the flags they replace."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from impacts.cli import main
from tests.conftest import copy_scenes
from tiling.cli import DEPRECATED_FLAGS

CONFIG = Path(__file__).parents[3] / "configs" / "tile.yaml"


def _run(*args: str) -> Result:
    return CliRunner().invoke(main, ["-q", "tile", *args])


def _errors(result: Result) -> list[str]:
    return [line for line in result.output.splitlines() if line.startswith("Error:")]


@pytest.fixture(scope="module")
def parts(scenes_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Three scenes tiled one job-array element at a time: parts, no manifest yet."""
    root = tmp_path_factory.mktemp("tile-cli")
    names = sorted(p.stem for p in scenes_dir.glob("*.tif") if not p.stem.endswith("_mask"))[:3]
    scenes = copy_scenes(scenes_dir, root / "scenes", names)
    out = root / "patches"
    for index in (1, 2, 3):
        result = _run("--scenes", str(scenes), "--out", str(out), "--seed", "2", "--array-index", str(index))
        assert result.exit_code == 0, result.output
    assert not (out / "manifest.csv").exists()
    return scenes, out


def test_tile_help_lists_the_subcommands_and_the_tiling_options() -> None:
    result = CliRunner().invoke(main, ["tile", "--help"])
    assert result.exit_code == 0
    commands = result.output.split("Commands:")[1].split()
    assert "merge" in commands and "add-reviewed" in commands
    assert "--scenes" in result.output and "--array-index" in result.output


def test_merge_subcommand_joins_the_parts_without_a_warning(parts: tuple[Path, Path]) -> None:
    scenes, out = parts
    result = _run("merge", "--scenes", str(scenes), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    lines = (out / "manifest.csv").read_text().splitlines()
    assert f"merged {len(lines) - 1} patches into {out / 'manifest.csv'}" in result.output


def test_deprecated_merge_only_writes_the_same_manifest_and_one_warning(parts: tuple[Path, Path]) -> None:
    scenes, out = parts
    assert _run("merge", "--scenes", str(scenes), "--out", str(out)).exit_code == 0
    merged = (out / "manifest.csv").read_bytes()
    (out / "manifest.csv").unlink()
    # As jobs/tile.bsub called it: with the tiling config, which the merge never used.
    result = _run("--scenes", str(scenes), "--out", str(out), "--config", str(CONFIG), "--merge-only")
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        "Warning: `impacts tile --merge-only` is deprecated; use `impacts tile merge --scenes DIR --out DIR`."
    ]
    assert (out / "manifest.csv").read_bytes() == merged


def test_deprecated_merge_only_still_checks_the_config(parts: tuple[Path, Path]) -> None:
    scenes, out = parts
    result = _run("--scenes", str(scenes), "--out", str(out), "--merge-only", "--set", "patch_px=7")
    assert result.exit_code == 1
    (error,) = _errors(result)
    assert "patch_px" in error


def test_add_reviewed_takes_the_file_as_its_argument(parts: tuple[Path, Path], tmp_path: Path) -> None:
    scenes, out = parts
    assert _run("merge", "--scenes", str(scenes), "--out", str(out)).exit_code == 0
    empty = tmp_path / "hard_negatives.csv"
    empty.write_text(
        "detection_id,scene,row_min,col_min,row_max,col_max,score,model_version,reason,analyst,decided_at\n"
    )
    new = _run("add-reviewed", str(empty), "--scenes", str(scenes), "--out", str(out))
    assert new.exit_code == 0, new.output
    assert "reviewed patches added=0" in new.output and new.stderr == ""
    old = _run("--reviewed", str(empty), "--scenes", str(scenes), "--out", str(out))
    assert old.exit_code == 0, old.output
    assert old.stdout == new.stdout
    assert old.stderr.splitlines() == [
        "Warning: `impacts tile --reviewed FILE` is deprecated; "
        "use `impacts tile add-reviewed FILE --scenes DIR --out DIR`."
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--reviewed", "f.csv", "--scenes", "s", "--out", "p", "--seed", "1"],
            "--reviewed takes only --scenes and --out, not --seed (and is deprecated: "
            "use `impacts tile add-reviewed FILE --scenes DIR --out DIR`)",
        ),
        (
            ["--reviewed", "f.csv", "--merge-only", "--scenes", "s", "--out", "p"],
            "--reviewed takes only --scenes and --out, not --merge-only",
        ),
        (
            ["--merge-only", "--array-index", "2", "--scenes", "s", "--out", "p"],
            "--merge-only takes only --scenes, --out, --seed, --config, --set, --test-scenes and "
            "--workers, not --array-index",
        ),
        (
            ["--seed", "3", "merge", "--scenes", "s", "--out", "p"],
            "`impacts tile merge` takes its options after its name, not --seed before it",
        ),
        # click words it "No such option: --seed" or "No such option '--seed'" by version.
        (["add-reviewed", "f.csv", "--scenes", "s", "--out", "p", "--seed", "1"], "No such option"),
        (["merge", "--scenes", "s", "--out", "p", "--config", "c.yaml"], "No such option"),
        (["--out", "p"], "Missing option '--scenes'"),
        (["--scenes", "s"], "Missing option '--out'"),
        (["merge", "--scenes", "s"], "Missing option '--out'"),
        (["add-reviewed", "--scenes", "s", "--out", "p"], "Missing argument 'FILE'"),
    ],
    ids=[
        "reviewed-seed",
        "reviewed-merge-only",
        "merge-only-array-index",
        "options-before-subcommand",
        "add-reviewed-seed",
        "merge-config",
        "tile-no-scenes",
        "tile-no-out",
        "merge-no-out",
        "add-reviewed-no-file",
    ],
)
def test_a_clash_or_a_missing_option_is_one_usage_error_before_any_work(
    args: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = _run(*args)
    assert result.exit_code == 2, result.output
    (error,) = _errors(result)
    assert message in error, error
    assert "deprecated;" not in result.output, "no deprecation warning beside an error"
    assert list(tmp_path.iterdir()) == [], "nothing written"


def test_every_deprecated_flag_names_a_real_subcommand() -> None:
    from tiling.cli import tile

    for spelling, command, _ in DEPRECATED_FLAGS.values():
        assert command.split()[0] in tile.commands, spelling
