"""Model bundles: exported whole, swapped in one step, always loadable at their path."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import tiny_config
from training.bundle import export_bundle, load_bundle, versions_dir
from training.model import build_unet

CONFIG = tiny_config()


@pytest.fixture(scope="module")
def model() -> Any:
    return build_unet(CONFIG.model)


def _versions(path: Path) -> list[str]:
    return sorted(p.name for p in versions_dir(path).iterdir())


def test_the_bundle_path_always_leads_to_the_newest_whole_bundle(model: Any, tmp_path: Path) -> None:
    path = tmp_path / "run" / "bundle"
    for k in range(3):
        export_bundle(path, model, CONFIG, f"run-r{k}", {"loss": [1.0]}, {"test": {"f1": k / 10}})
    bundle = load_bundle(path)
    assert (bundle.version, bundle.metrics, bundle.path) == ("run-r2", {"test": {"f1": 0.2}}, path)
    assert load_bundle(path.parent).version == "run-r2", "a run folder still names its bundle"
    batch = np.zeros((1, 128, 128, 1), np.float32)
    np.testing.assert_allclose(bundle.model.predict_on_batch(batch), model.predict_on_batch(batch), atol=1e-6)
    assert path.is_symlink() and not Path(path.readlink()).is_absolute(), "the run folder can move"
    kept = _versions(path)
    assert len(kept) == 2 and kept[-1].endswith("run-r2") and kept[0].endswith("run-r1"), kept
    moved = shutil.move(tmp_path / "run", tmp_path / "moved")
    assert load_bundle(Path(moved) / "bundle").version == "run-r2"


@pytest.mark.slow
def test_a_reader_finds_a_complete_bundle_while_it_is_replaced(model: Any, tmp_path: Path) -> None:
    path = tmp_path / "bundle"
    export_bundle(path, model, CONFIG, "v0", {}, {})
    stop = threading.Event()
    problems: list[str] = []
    versions_seen: set[str] = set()

    def read() -> None:
        while not stop.is_set():
            try:
                versions_seen.add(json.loads((path / "version.json").read_text())["version"])
                for name in ("model.keras", "config.yaml", "metrics.json", "history.json"):
                    if not (path / name).is_file():
                        problems.append(f"{name} missing")
            except (OSError, ValueError) as exc:
                problems.append(repr(exc))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for k in range(1, 6):
            export_bundle(path, model, CONFIG, f"v{k}", {}, {})
    finally:
        stop.set()
        reader.join()
    assert not problems, problems[:3]
    assert len(versions_seen) >= 2 and load_bundle(path).version == "v5"


def test_a_failed_export_leaves_the_current_bundle(model: Any, tmp_path: Path) -> None:
    path = tmp_path / "bundle"
    export_bundle(path, model, CONFIG, "good", {}, {})

    class Broken:
        def save(self, target: Path) -> None:
            target.write_bytes(b"half a mod")
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        export_bundle(path, Broken(), CONFIG, "broken", {}, {})
    assert load_bundle(path).version == "good"
    assert not [n for n in _versions(path) if n.endswith(".partial")], "the half-written version is removed"
    (versions_dir(path) / "20990101T000000000000Z-killed.partial").mkdir()  # a killed export's leftover
    export_bundle(path, model, CONFIG, "next", {}, {})
    assert load_bundle(path).version == "next"
    assert not [n for n in _versions(path) if n.endswith(".partial")]


def test_a_plain_folder_bundle_of_an_older_version_is_replaced_by_the_link(
    model: Any, tmp_path: Path
) -> None:
    path = tmp_path / "bundle"
    export_bundle(tmp_path / "new" / "bundle", model, CONFIG, "old-style", {}, {})
    shutil.copytree((tmp_path / "new" / "bundle").resolve(), path)  # as older versions wrote it
    assert path.is_dir() and not path.is_symlink()
    export_bundle(path, model, CONFIG, "linked", {}, {})
    assert path.is_symlink() and load_bundle(path).version == "linked"
    assert any(n.endswith("old-style") for n in _versions(path)), "the old bundle is kept as a version"
