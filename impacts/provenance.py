"""What produced an output: resolved config, package version, git revision and seed."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from impacts import __version__
from impacts.atomic import write_json_atomic


def git_revision(start: Path | None = None) -> str:
    """Return the git commit of the source tree (``-dirty`` when modified), or ``unknown``.

    Args:
        start: A folder inside the work tree; defaults to this package's folder.
    """
    cwd = start or Path(__file__).resolve().parent

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=5, check=True)
        return done.stdout.strip()

    try:
        rev = git("rev-parse", "--short=12", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{rev}-dirty" if dirty else rev


def run_record(config: BaseModel, seed: int, command: str) -> dict[str, Any]:
    """Describe a run: command, resolved config, version, git revision, seed, time.

    Args:
        config: The resolved (validated, overridden) config.
        seed: The seed the run used.
        command: The subcommand name, e.g. ``tile``.
    """
    return {
        "command": command,
        "argv": sys.argv,
        "version": __version__,
        "git_revision": git_revision(),
        "seed": seed,
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": config.model_dump(mode="json"),
    }


def write_run_record(out_dir: Path, config: BaseModel, seed: int, command: str) -> Path:
    """Write ``run.json`` (see :func:`run_record`) into ``out_dir`` and return its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    return write_json_atomic(out_dir / "run.json", run_record(config, seed, command))
