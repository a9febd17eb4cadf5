from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from impacts.cli import main

PROBE = """
import sys
from impacts.cli import main
try:
    main({args!r}, standalone_mode=False)
except SystemExit:
    pass
print("TF-IMPORTED" if any(m == "tensorflow" or m.startswith("tensorflow.") for m in sys.modules) else "NO-TF")
"""


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["synth", "--help"],
        ["tile", "--help"],
        ["-q", "synth", "--out", "{tmp}/s", "--count", "2", "--size", "400x300"],
        ["-q", "tile", "--scenes", "{tmp}/s", "--out", "{tmp}/p", "--workers", "1"],
    ],
    ids=["help", "synth-help", "tile-help", "synth", "tile"],
)
def test_help_and_tiling_commands_never_import_tensorflow(
    args: list[str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    tmp = tmp_path_factory.getbasetemp() / "cli-no-tf"
    tmp.mkdir(exist_ok=True)
    code = PROBE.format(args=[a.format(tmp=tmp) for a in args])
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.stdout.strip().splitlines()[-1] == "NO-TF", result.stdout + result.stderr


def test_set_overrides_reach_the_resolved_config(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        [
            "-q",
            "synth",
            "--out",
            str(tmp_path),
            "--size",
            "300x300",
            "--count",
            "1",
            "--set",
            "difficulty=hard",
            "--set",
            "max_impacts=3",
        ],
    )
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "run.json").read_text())["config"]
    assert config["difficulty"] == "hard" and config["max_impacts"] == 3 and config["size"] == [300, 300]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--set", "no_such_key=1"], "no_such_key"),
        (["--set", "count"], "KEY=VALUE"),
        (["--size", "big"], "HEIGHTxWIDTH"),
        (["--config", "/nonexistent/synth.yaml"], "/nonexistent/synth.yaml"),
        (["--size", "100x100"], "below 256x256"),
    ],
)
def test_user_errors_are_one_line_without_traceback(args: list[str], expected: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["synth", "--out", str(tmp_path), *args])
    assert result.exit_code != 0
    assert expected in result.output and "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
