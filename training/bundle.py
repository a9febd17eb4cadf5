"""Model bundles: one folder that rebuilds a trained model alone.

``bundle/model.keras`` (architecture + weights), ``config.yaml`` (the resolved training
config), ``history.json``, ``metrics.json`` and ``version.json`` (version string, package
version, git revision, creation time).

A bundle is replaced while a service may be reading it, so ``RUN/bundle`` is a symbolic
link to a complete version folder, ``RUN/bundle.versions/<UTC time>-<version>``. An export
writes the new version beside the others (as ``.partial`` until it is complete and synced),
then points the link at it in one ``os.replace``: a reader that opens ``RUN/bundle/...``
always finds one whole bundle, the old or the new. The previous version is kept (a reader
that resolved the link just before the swap can finish); older ones are removed. Copy a
bundle elsewhere with ``cp -rL`` (or ``rsync -aL``), which follows the link.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from impacts import __version__
from impacts.atomic import PARTIAL_SUFFIX, fsync_path, fsync_tree, read_marker, replace_symlink
from impacts.config import dump_config, load_config
from impacts.errors import BundleError, ConfigError
from impacts.provenance import git_revision
from training.config import TrainConfig

log = logging.getLogger(__name__)

MODEL_FILE = "model.keras"
#: Suffix of the folder that holds a bundle link's versions (``RUN/bundle.versions``).
VERSIONS_SUFFIX = ".versions"
#: Versions kept: the current one and the one before it.
KEEP_VERSIONS = 2


@dataclass
class Bundle:
    """A loaded model bundle."""

    path: Path
    model: Any
    config: TrainConfig
    version: str
    history: dict[str, list[float]] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)


def versions_dir(path: Path) -> Path:
    """The folder that holds the versions the bundle link ``path`` points at."""
    return path.with_name(path.name + VERSIONS_SUFFIX)


def export_bundle(
    path: Path,
    model: Any,
    config: TrainConfig,
    version: str,
    history: dict[str, list[float]],
    metrics: dict[str, Any],
) -> Path:
    """Write a bundle and make ``path`` point at it in one step (see the module docstring).

    Args:
        path: The bundle path readers use (``RUN/bundle``); a link to a version folder.
        model: The Keras model.
        config: The resolved training config (rebuilds the model).
        version: The model version string (``RUN-r1``).
        history: Per-epoch training history.
        metrics: Metrics per split.

    Returns:
        ``path``.

    Raises:
        OSError: The bundle cannot be written, or the file system has no symbolic links.
    """
    versions = versions_dir(path)
    versions.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    name = f"{now.strftime('%Y%m%dT%H%M%S%fZ')}-{_file_safe(version)}"
    partial = versions / (name + PARTIAL_SUFFIX)
    partial.mkdir()
    try:
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
                    "created_utc": now.isoformat(timespec="seconds"),
                },
                indent=2,
            )
            + "\n"
        )
        fsync_tree(partial)
        partial.rename(versions / name)
        fsync_path(versions)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if path.is_dir() and not path.is_symlink():
        _adopt_plain_folder(path, versions)
    replace_symlink(path, f"{versions.name}/{name}")
    _prune(versions, keep=name)
    return path


def _file_safe(version: str) -> str:
    """A version string as part of a folder name (letters, digits, ``_.-``; 100 at most)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", version)[:100]


def _adopt_plain_folder(path: Path, versions: Path) -> None:
    """Move a bundle written as a plain folder (older versions of this package) into the
    versions folder, so a link can take its place; readers miss it only between this rename
    and the link's creation, once per run folder."""
    old = read_marker(path / "version.json") or {}
    name = f"00000000T000000000000Z-{_file_safe(str(old.get('version', 'old')))}"
    log.info("bundle %s is a plain folder: moved to %s, a link takes its place", path, versions / name)
    shutil.rmtree(versions / name, ignore_errors=True)
    path.rename(versions / name)


def _prune(versions: Path, keep: str) -> None:
    """Remove leftovers of killed exports and all versions but the newest ``KEEP_VERSIONS``
    (never ``keep``, the one the link points at)."""
    for leftover in versions.glob("*" + PARTIAL_SUFFIX):
        shutil.rmtree(leftover, ignore_errors=True)
    done = sorted(p for p in versions.iterdir() if p.is_dir() and not p.name.endswith(PARTIAL_SUFFIX))
    for old in done[:-KEEP_VERSIONS]:
        if old.name != keep:
            shutil.rmtree(old, ignore_errors=True)


def _bundle_files(path: str | Path) -> tuple[Path, Path]:
    """``(folder, files)``: the bundle path as named (``RUN`` becomes ``RUN/bundle``) and the
    version folder it resolves to, checked to hold a bundle."""
    folder = Path(path)
    if (folder / "bundle" / MODEL_FILE).is_file():
        folder = folder / "bundle"
    # Every file from one version, even if an export swaps the link while a reader reads.
    files = folder.resolve()
    missing = [n for n in (MODEL_FILE, "config.yaml", "version.json") if not (files / n).is_file()]
    if missing:
        raise BundleError(
            f"{folder} is not a model bundle (missing {', '.join(missing)}); pass the bundle folder `impacts train` wrote (RUN/bundle)"
        )
    return folder, files


def _read_config(folder: Path, files: Path) -> TrainConfig:
    try:
        return load_config(files / "config.yaml", TrainConfig)
    except ConfigError as exc:
        raise ConfigError(
            f"{exc}; the bundle {folder} was written by another version of this package "
            f"(see its version.json): use that version, or train again"
        ) from exc


def bundle_config(path: str | Path) -> TrainConfig:
    """The training config saved in a bundle, read without loading the model (fast: a
    command checks its options against it before it waits for the model).

    Args:
        path: The bundle folder (``RUN/bundle``) or a run folder that holds one.

    Returns:
        The bundle's resolved training config.

    Raises:
        BundleError: The folder or one of its files is missing.
        ConfigError: Its ``config.yaml`` does not fit this version's training config.
    """
    return _read_config(*_bundle_files(path))


def load_bundle(path: str | Path, compile: bool = False) -> Bundle:
    """Rebuild a model bundle.

    Args:
        path: The bundle folder (``RUN/bundle``) or a run folder that holds one.
        compile: Restore the optimizer and loss too (not needed to predict).

    Returns:
        The bundle with its Keras model; ``path`` is the folder as named (the link), every
        file is read from the one version it pointed at.

    Raises:
        BundleError: The folder or one of its files is missing.
        ConfigError: Its ``config.yaml`` does not fit this version's training config.
    """
    import keras

    folder, files = _bundle_files(path)
    config = _read_config(folder, files)
    model = keras.saving.load_model(files / MODEL_FILE, compile=compile)
    version = json.loads((files / "version.json").read_text())["version"]
    history = json.loads((files / "history.json").read_text()) if (files / "history.json").is_file() else {}
    metrics = json.loads((files / "metrics.json").read_text()) if (files / "metrics.json").is_file() else {}
    return Bundle(folder, model, config, version, history, metrics)
