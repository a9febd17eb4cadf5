from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
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
        ["tile", "merge", "--help"],
        ["-q", "synth", "--out", "{tmp}/s", "--count", "2", "--size", "400x300"],
        ["-q", "tile", "--scenes", "{tmp}/s", "--out", "{tmp}/p", "--workers", "1"],
    ],
    ids=["help", "synth-help", "tile-help", "tile-merge-help", "synth", "tile"],
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


CONFIGS = Path(__file__).parents[3] / "configs"


def _stub_bundle(folder: Path, config_text: str | None = None) -> Path:
    """A bundle whose saved config is real and whose model file is a stub: every command
    must check its options against the config before it loads the model."""
    from impacts.config import dump_config
    from training.config import TrainConfig

    folder.mkdir(parents=True)
    (folder / "model.keras").write_bytes(b"never loaded")
    (folder / "config.yaml").write_text(config_text or dump_config(TrainConfig()))
    (folder / "version.json").write_text('{"version": "stub"}\n')
    return folder


@pytest.mark.parametrize(
    ("args", "key"),
    [
        (["synth", "--out", "{tmp}/s", "--set", "max_impacs=3"], "max_impacs"),
        (["tile", "--scenes", "{tmp}/s", "--out", "{tmp}/p", "--set", "patch_px=7"], "patch_px"),
        (
            ["tile", "--scenes", "{tmp}/s", "--out", "{tmp}/p", "--set", "split.val_fracton=0.1"],
            "split.val_fracton",
        ),
        (
            [
                "train",
                "--config",
                str(CONFIGS / "unet-tiny.yaml"),
                "--data",
                "{tmp}/p",
                "--out",
                "{tmp}/r",
                "--set",
                "epochs=0",
            ],
            "epochs",
        ),
        (
            [
                "train",
                "--config",
                str(CONFIGS / "unet-tiny.yaml"),
                "--data",
                "{tmp}/p",
                "--out",
                "{tmp}/r",
                "--set",
                "model.dept=3",
            ],
            "model.dept",
        ),
        (
            [
                "evaluate",
                "--model",
                "{bundle}",
                "--data",
                "{tmp}/p",
                "--out",
                "{tmp}/e",
                "--set",
                "thresold=0.4",
            ],
            "thresold",
        ),
        (
            [
                "evaluate",
                "--model",
                "{bundle}",
                "--data",
                "{tmp}/p",
                "--out",
                "{tmp}/e",
                "--set",
                "threshold=1.5",
            ],
            "threshold",
        ),
        (
            ["predict", "--model", "{bundle}", "{tmp}/s", "--out", "{tmp}/o", "--threshold", "1.5"],
            "--threshold",
        ),
        (
            ["predict", "--model", "{bundle}", "{tmp}/s", "--out", "{tmp}/o", "--window-px", "8"],
            "--window-px",
        ),
        (
            ["predict", "--model", "{bundle}", "{tmp}/s", "--out", "{tmp}/o", "--batch-size", "0"],
            "--batch-size",
        ),
    ],
    ids=[
        "synth-unknown-key",
        "tile-bad-value",
        "tile-unknown-nested-key",
        "train-bad-value",
        "train-unknown-nested-key",
        "evaluate-unknown-key",
        "evaluate-bad-value",
        "predict-threshold",
        "predict-window",
        "predict-batch",
    ],
)
def test_every_command_reports_a_bad_option_or_override_in_one_line(
    args: list[str], key: str, tmp_path: Path
) -> None:
    bundle = _stub_bundle(tmp_path / "bundle")
    argv = [a.format(tmp=tmp_path, bundle=bundle) for a in args]
    result = CliRunner().invoke(main, ["-q", *argv])
    assert result.exit_code != 0
    assert "Traceback" not in result.output and "validation error" not in result.output, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    assert f"{key}:" in errors[0] and "invalid" in errors[0], errors[0]
    assert isinstance(result.exception, SystemExit), "a user error, not a crash"


def test_a_bundle_from_another_version_is_one_line_naming_the_key(tmp_path: Path) -> None:
    bundle = _stub_bundle(tmp_path / "bundle", "seed: 0\nmodel: {depth: 2, retired_option: 1}\n")
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    profile = {"driver": "GTiff", "height": 64, "width": 64, "count": 1, "dtype": "uint8"}
    with rasterio.open(scenes / "S1.tif", "w", **profile) as ds:  # predict checks its scenes first
        ds.write(np.zeros((1, 64, 64), np.uint8))
    result = CliRunner().invoke(
        main, ["-q", "predict", "--model", str(bundle), str(scenes), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code != 0 and "Traceback" not in result.output
    (error,) = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert "model.retired_option" in error and "another version" in error


def test_a_broken_yaml_config_is_one_line_naming_the_place(tmp_path: Path) -> None:
    config = tmp_path / "broken.yaml"
    config.write_text("count: [1\nseed: 0\n")
    result = CliRunner().invoke(main, ["-q", "synth", "--out", str(tmp_path / "s"), "--config", str(config)])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert result.output.strip().splitlines() == [
        f"Error: config file {config} is not valid YAML: line 2, column 5: expected ',' or ']', but got ':'"
    ]
