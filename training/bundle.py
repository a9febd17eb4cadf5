"""Model bundles: one folder that rebuilds a trained model alone.

``bundle/model.keras`` (architecture + weights), ``config.yaml`` (the resolved training
config), ``history.json``, ``metrics.json`` and ``version.json`` (version string, package
version, git revision, creation time).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from impacts import __version__
from impacts.config import dump_config
from impacts.errors import ImpactsError
from impacts.provenance import git_revision
from training.config import TrainConfig

MODEL_FILE = "model.keras"


class BundleError(ImpactsError, FileNotFoundError):
    """A model bundle is missing or incomplete."""


@dataclass
class Bundle:
    """A loaded model bundle."""

    path: Path
    model: Any
    config: TrainConfig
    version: str
    history: dict[str, list[float]] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)


def export_bundle(
    path: Path,
    model: Any,
    config: TrainConfig,
    version: str,
    history: dict[str, list[float]],
    metrics: dict[str, Any],
) -> Path:
    """Write a bundle folder (replacing an older one only once the new one is complete)."""
    partial = path.with_name(path.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    model.save(partial / MODEL_FILE)
    (partial / "config.yaml").write_text(dump_config(config))
    (partial / "history.json").write_text(json.dumps(history, indent=1) + "\n")
    (partial / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (partial / "version.json").write_text(
        json.dumps(
            {
                "version": version,
                "package_version": __version__,
                "git_revision": git_revision(),
                "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
            },
            indent=2,
        )
        + "\n"
    )
    shutil.rmtree(path, ignore_errors=True)
    partial.rename(path)
    return path


def load_bundle(path: str | Path, compile: bool = False) -> Bundle:
    """Rebuild a model bundle.

    Args:
        path: The bundle folder (``RUN/bundle``) or a run folder that holds one.
        compile: Restore the optimizer and loss too (not needed to predict).

    Returns:
        The bundle with its Keras model.

    Raises:
        BundleError: The folder or one of its files is missing.
    """
    import keras

    folder = Path(path)
    if (folder / "bundle" / MODEL_FILE).is_file():
        folder = folder / "bundle"
    missing = [n for n in (MODEL_FILE, "config.yaml", "version.json") if not (folder / n).is_file()]
    if missing:
        raise BundleError(
            f"{folder} is not a model bundle (missing {', '.join(missing)}); pass the bundle folder `impacts train` wrote (RUN/bundle)"
        )
    model = keras.saving.load_model(folder / MODEL_FILE, compile=compile)
    config = TrainConfig.model_validate(yaml.safe_load((folder / "config.yaml").read_text()))
    version = json.loads((folder / "version.json").read_text())["version"]
    history = json.loads((folder / "history.json").read_text()) if (folder / "history.json").is_file() else {}
    metrics = json.loads((folder / "metrics.json").read_text()) if (folder / "metrics.json").is_file() else {}
    return Bundle(folder, model, config, version, history, metrics)
