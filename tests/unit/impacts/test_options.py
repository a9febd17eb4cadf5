"""The options of :mod:`impacts.options` behave the same in every command that takes them."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from impacts.cli import main
from impacts.options import option_overrides
from tests.unit.impacts.test_cli import CONFIGS, _stub_bundle

SHARED = ("--out", "--scenes", "--config", "--set", "--seed", "--workers", "--array-index")
SHARED += ("--model", "--data", "--db", "-v", "-q")


def _commands() -> dict[str, click.Command]:
    """Every command of ``impacts`` by its path (``"tile merge"``), groups included."""
    found: dict[str, click.Command] = {"": main}
    pending: list[tuple[str, click.Group]] = [("", main)]
    while pending:
        path, group = pending.pop()
        ctx = click.Context(group)
        for name in group.list_commands(ctx):
            command = group.get_command(ctx, name)
            assert command is not None, name
            found[f"{path} {name}".strip()] = command
            if isinstance(command, click.Group):
                pending.append((f"{path} {name}".strip(), command))
    return found


def _declaration(option: click.Option) -> tuple[object, ...]:
    """What a user can tell apart: spelling, parameter name, value type, how often, env."""
    kind = option.type
    path = (kind.file_okay, kind.dir_okay, kind.type) if isinstance(kind, click.Path) else None
    return (tuple(option.opts), option.name, kind.name, path, option.multiple, option.count, option.envvar)


def test_every_shared_option_is_declared_alike_wherever_it_is_taken() -> None:
    by_flag: dict[str, dict[str, tuple[object, ...]]] = defaultdict(dict)
    for path, command in _commands().items():
        for param in command.params:
            if isinstance(param, click.Option):
                for flag in param.opts:
                    # `impacts catalog --out FILE.gpkg|FILE.parquet` writes one file (the
                    # issue's contract); every other --out is a folder.
                    if flag in SHARED and (flag, path) != ("--out", "catalog"):
                        by_flag[flag][path or "impacts"] = _declaration(param)
    assert set(by_flag) == set(SHARED)
    for flag, declarations in by_flag.items():
        assert len(set(declarations.values())) == 1, (flag, declarations)
    # The ones that more than one command takes (the reason the module exists).
    assert set(by_flag["--out"]) >= {
        "synth",
        "tile",
        "tile merge",
        "train",
        "evaluate",
        "predict",
        "review export",
    }
    assert set(by_flag["--model"]) == {"evaluate", "predict", "serve", "jobs summary"}
    assert set(by_flag["--set"]) == {"synth", "tile", "train", "evaluate"}
    assert set(by_flag["--array-index"]) == {"tile", "predict"}
    assert len(by_flag["--db"]) == 7


def _argv(command: str, tmp: Path, bundle: Path) -> list[str]:
    return {
        "synth": ["synth", "--out", f"{tmp}/s", "--count", "1", "--size", "300x300"],
        "tile": ["tile", "--scenes", f"{tmp}/s", "--out", f"{tmp}/p"],
        "train": [
            "train",
            "--config",
            str(CONFIGS / "unet-tiny.yaml"),
            "--data",
            f"{tmp}/p",
            "--out",
            f"{tmp}/r",
        ],
        "evaluate": ["evaluate", "--model", str(bundle), "--data", f"{tmp}/p", "--out", f"{tmp}/e"],
    }[command]


SET_COMMANDS = ["synth", "tile", "train", "evaluate"]


@pytest.mark.parametrize("command", SET_COMMANDS)
@pytest.mark.parametrize(
    ("sets", "expected"),
    [(["--set", "seed"], "KEY=VALUE"), (["--set", "no_such_key=1"], "no_such_key")],
    ids=["malformed", "unknown-key"],
)
def test_set_is_refused_alike_by_every_command_before_any_work(
    command: str, sets: list[str], expected: str, tmp_path: Path
) -> None:
    bundle = _stub_bundle(tmp_path / "bundle")
    result = CliRunner().invoke(main, ["-q", *_argv(command, tmp_path, bundle), *sets])
    assert result.exit_code == 1, result.output
    (error,) = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert expected in error and "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"], "nothing written"


@pytest.mark.parametrize("command", ["synth", "tile", "train"])
def test_a_missing_config_file_is_one_line_naming_it_in_every_command(command: str, tmp_path: Path) -> None:
    argv = _argv(command, tmp_path, tmp_path)
    if "--config" in argv:  # train requires one: point it elsewhere
        argv[argv.index("--config") + 1] = str(tmp_path / "nope.yaml")
    else:
        argv += ["--config", str(tmp_path / "nope.yaml")]
    result = CliRunner().invoke(main, ["-q", *argv])
    assert result.exit_code == 1, result.output
    (error,) = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert str(tmp_path / "nope.yaml") in error


@pytest.mark.parametrize("command", ["synth", "tile"])
def test_an_option_wins_over_set_of_the_same_key(command: str, tmp_path: Path) -> None:
    """``--seed`` beats ``--set seed=`` in both commands that take both (seen in run.json)."""
    if command == "tile":  # scenes to tile
        assert (
            CliRunner().invoke(main, ["-q", *_argv("synth", tmp_path, tmp_path), "--count", "3"]).exit_code
            == 0
        )
    argv = [*_argv(command, tmp_path, tmp_path), "--set", "seed=1", "--seed", "9"]
    result = CliRunner().invoke(main, ["-q", *argv, *(["--workers", "1"] if command == "tile" else [])])
    assert result.exit_code == 0, result.output
    out = tmp_path / ("p" if command == "tile" else "s")
    assert json.loads((out / "run.json").read_text())["seed"] == 9


def test_option_overrides_come_after_set_and_skip_options_not_given() -> None:
    assert option_overrides({"seed": 3, "workers": None}, ("seed=1", "a.b=2")) == [
        "seed=1",
        "a.b=2",
        "seed=3",
    ]
