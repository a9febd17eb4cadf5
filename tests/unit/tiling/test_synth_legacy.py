"""The easy/medium/hard presets write what they always wrote for a seed.

The digests were taken from the generator before the realistic preset existed; tests and
the demo rely on these scenes, so a change here is a change of the embedded data set.
Digests cover the decoded pixels (not the compressed bytes, which depend on the GDAL
build), the geotransform, the original object-list columns and ``data.csv``.
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import pytest
import rasterio

from tiling.config import SynthConfig
from tiling.synth import synth_scenes

ORIGINAL_COLUMNS = ("id", "kind", "row", "col", "radius_px", "x", "y")


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(folder.iterdir()):
        h.update(path.name.encode())
        if path.suffix == ".tif":
            with rasterio.open(path) as ds:
                h.update(ds.read(1).tobytes())
                h.update(repr(tuple(ds.transform)).encode())
        elif path.name.endswith("_objects.csv"):
            with path.open(newline="") as fh:
                for rec in csv.DictReader(fh):
                    h.update(",".join(rec[c] for c in ORIGINAL_COLUMNS).encode())
        else:
            h.update(path.read_bytes())
    return h.hexdigest()


@pytest.mark.parametrize(
    ("difficulty", "expected"),
    [
        ("easy", "3ff1d3dd20bc34dd0b99b7f93ae7024f7fda98b04c0e887dfa8de141e252362a"),
        ("medium", "a8bbfe30e11391b6ea2aadcf2252f1f570b950f12dc1d359b771f8c4b453951f"),
        ("hard", "22803d97e6795d374acba0062a3a2038e39631ae83998fc1697f688cae64953f"),
    ],
)
def test_fixed_size_presets_write_the_same_scenes_as_before(
    tmp_path: Path, difficulty: str, expected: str
) -> None:
    synth_scenes(tmp_path, SynthConfig(count=2, seed=7, size=(640, 512), difficulty=difficulty))
    assert _digest(tmp_path) == expected


def test_drawn_sizes_and_small_windows_write_the_same_scene_as_before(tmp_path: Path) -> None:
    cfg = SynthConfig(count=1, seed=3, min_size=(600, 400), max_size=(800, 700), window_px=256)
    synth_scenes(tmp_path, cfg)
    assert _digest(tmp_path) == "4b5d675782ea0f667ba87d61e7d91e2ee6279d300c10942d4790ab67aa5c06a1"


def test_legacy_presets_plant_only_the_four_original_kinds(tmp_path: Path) -> None:
    (summary,) = synth_scenes(tmp_path, SynthConfig(count=1, seed=2, size=(1024, 1024), difficulty="hard"))
    with (tmp_path / f"{summary.file_name}_objects.csv").open(newline="") as fh:
        kinds = {rec["kind"] for rec in csv.DictReader(fh)}
    assert kinds <= {"impact", "crater", "shadow", "dune"}
