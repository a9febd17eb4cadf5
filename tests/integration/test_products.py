"""GIS-native products of `impacts predict` and `impacts catalog`: a COG probability map in
the scene's IAU CRS, valid STAC (checked offline), a lon/lat catalog; memory stays flat."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyogrio.raw
import pytest
import rasterio
import shapely
from click.testing import CliRunner
from rio_cogeo.cogeo import cog_validate

from impacts.cli import main
from tiling.crs import crs_code

from ..conftest import copy_scenes
from ..stac_schemas import validate_offline

REPO = Path(__file__).resolve().parents[2]


def _invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["-q", *args])
    return result.exit_code, result.output


def _predict(bundle: Path, target: Path, out: Path) -> tuple[int, str]:
    return _invoke(
        "predict", "--model", str(bundle), str(target), "--out", str(out), "--window-px", "128",
        "--overlap-px", "32", "--threshold", "0.3",
    )  # fmt: skip


@pytest.fixture(scope="module")
def predicted(untrained_bundle: Path, scenes_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two scenes predicted into ``pred/`` (scenes in ``scenes/`` beside it)."""
    root = tmp_path_factory.mktemp("products")
    names = sorted(p.stem for p in scenes_dir.glob("*.tif") if not p.stem.endswith("_mask"))[:2]
    scenes = copy_scenes(scenes_dir, root / "scenes", names)
    code, output = _predict(untrained_bundle, scenes, root / "pred")
    assert code == 0, output
    return root / "pred"


def test_the_probability_map_is_a_valid_cog_on_the_scene_grid(predicted: Path) -> None:
    scenes = predicted.parent / "scenes"
    for prob in sorted(predicted.glob("*_prob.tif")):
        valid, errors, warnings = cog_validate(prob, strict=True)
        assert valid and not errors and not warnings, (errors, warnings)
        with rasterio.open(scenes / prob.name.replace("_prob", "")) as src, rasterio.open(prob) as ds:
            assert (ds.height, ds.width, ds.transform) == (src.height, src.width, src.transform)
            assert crs_code(ds.crs) == "IAU_2015:49910"
            assert ds.overviews(1) and ds.block_shapes[0] == (256, 256)
            assert ds.scales == (pytest.approx(1 / 255),) and ds.dtypes[0] == "uint8"
    assert not [p for p in predicted.iterdir() if "partial" in p.name]


def test_whole_scene_evaluation_re_reads_the_cog(predicted: Path) -> None:
    from training.scene_pass import EvalScene, rethreshold_scene

    scenes = predicted.parent / "scenes"
    prob = sorted(predicted.glob("*_prob.tif"))[0]
    name = prob.name.removesuffix("_prob.tif")
    scene = EvalScene(name, scenes / f"{name}.tif", scenes / f"{name}_mask.tif", None)
    result = rethreshold_scene(scene, prob, [0.3, 0.9], 1, 0)
    with rasterio.open(scene.image) as src:
        assert (result.height, result.width) == (src.height, src.width)
    assert 0 < result.valid_px <= result.height * result.width


def test_stac_items_and_collection_are_valid_and_point_at_real_files(predicted: Path) -> None:
    items = sorted(predicted.glob("*_stac.json"))
    assert len(items) == 2
    for path in items:
        item = json.loads(path.read_text())
        validate_offline(item)
        assert item["properties"]["ssys:targets"] == ["Mars"]
        assert item["properties"]["proj:code"] == "IAU_2015:49910"
        for asset in item["assets"].values():
            assert (predicted / asset["href"]).resolve().is_file(), asset["href"]
        detections = json.loads((predicted / item["assets"]["detections"]["href"]).read_text())
        assert item["properties"]["impacts:detections"] == len(detections["features"])
    collection = json.loads((predicted / "collection.json").read_text())
    validate_offline(collection)
    assert sorted(link["href"] for link in collection["links"]) == [f"./{p.name}" for p in items]


def test_a_resumed_folder_gets_its_missing_stac_item_without_predicting(
    untrained_bundle: Path, predicted: Path, tmp_path: Path
) -> None:
    import shutil

    out = tmp_path / "pred"
    shutil.copytree(predicted, out)
    shutil.copytree(predicted.parent / "scenes", tmp_path / "scenes")
    item = sorted(out.glob("*_stac.json"))[0]
    item.unlink()  # as for a folder predicted before STAC Items existed
    before = {p: p.stat().st_mtime_ns for p in out.glob("*_prob.tif")}
    code, output = _predict(untrained_bundle, tmp_path / "scenes", out)
    assert code == 0 and output.count(" resumed ") == 2, output
    assert {p: p.stat().st_mtime_ns for p in out.glob("*_prob.tif")} == before
    validate_offline(json.loads(item.read_text()))


def test_the_catalog_of_a_prediction_run_is_in_lon_lat_inside_each_scene(
    predicted: Path, tmp_path: Path
) -> None:
    code, output = _invoke("catalog", str(predicted), "--out", str(tmp_path / "all.gpkg"))
    assert code == 0, output
    meta, _, geometry, fields = pyogrio.raw.read(tmp_path / "all.gpkg")
    rows = [dict(zip(meta["fields"], values, strict=True)) for values in zip(*fields, strict=True)]
    features = {
        p.name.removesuffix("_detections.geojson"): json.loads(p.read_text())["features"]
        for p in predicted.glob("*_detections.geojson")
    }
    assert len(rows) == sum(len(f) for f in features.values()) > 0
    for row, wkb in zip(rows, geometry, strict=True):
        bbox = json.loads((predicted / f"{row['scene']}_stac.json").read_text())["bbox"]
        assert bbox[0] <= row["lon"] <= bbox[2] and bbox[1] <= row["lat"] <= bbox[3]
        assert shapely.from_wkb(wkb).contains(shapely.Point(row["lon"], row["lat"]))
        assert row["model_version"] == "untrained-test"


COG_RSS = """
import resource, sys
from pathlib import Path
import numpy as np
import tiling.io as tio
from rasterio.transform import Affine
from tiling.crs import MARS_EQC
tio.GDAL_CACHE_MB = 16  # a small cache, so a map held in memory would show
h, w = int(sys.argv[1]), int(sys.argv[2])
profile = tio.geotiff_profile(h, w, "uint8", MARS_EQC, Affine(6, 0, 0, 0, -6, 0), None)
stripe = (np.random.default_rng(0).random((256, w)) ** 8 * 255).astype(np.uint8)
with tio.open_cog_writer(Path(sys.argv[3]) / "m_prob.tif", profile) as dst:
    for r in range(0, h, 256):
        tio.write_window(dst, stripe[: min(256, h - r)], r, 0)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


@pytest.mark.slow
def test_writing_a_cog_keeps_memory_flat_whatever_the_map_size(tmp_path: Path) -> None:
    def peak_mb(height: int, width: int) -> float:
        done = subprocess.run(
            [sys.executable, "-c", COG_RSS, str(height), str(width), str(tmp_path)],
            cwd=REPO, capture_output=True, text=True, check=True, timeout=300,
        )  # fmt: skip
        return float(done.stdout.split()[-1])

    small, large = peak_mb(1000, 1000), peak_mb(12000, 6000)  # 1 and 72 MB of map
    assert large - small < 36, f"peak RSS grew {large - small:.0f} MB for 71 MB more map"
