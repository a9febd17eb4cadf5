from __future__ import annotations

import csv
import hashlib
import re
from pathlib import Path

import numpy as np
import rasterio
from scipy import ndimage

from tiling.config import SynthConfig
from tiling.synth import MARS_RADIUS_M, scene_spec, synth_scenes
from tiling.synth_render import render_window

CTX_NAME = re.compile(r"^[BDFGJP]\d{2}_\d{6}_\d{4}_X[IN]_\d{2}[NS]\d{3}W$")


def _digest(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.iterdir())
        if p.name != "run.json"
    }


def test_same_seed_writes_same_bytes_and_other_seed_differs(tmp_path: Path) -> None:
    cfg = SynthConfig(count=2, seed=5, size=(600, 500))
    synth_scenes(tmp_path / "a", cfg)
    synth_scenes(tmp_path / "b", cfg)
    synth_scenes(tmp_path / "c", cfg.model_copy(update={"seed": 6}))
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert set(_digest(tmp_path / "a").values()).isdisjoint(_digest(tmp_path / "c").values())


def test_scene_files_are_ctx_like_georeferenced_tiled_geotiffs(scenes_dir: Path) -> None:
    inventory = list(csv.DictReader((scenes_dir / "data.csv").open()))
    assert len(inventory) == 5
    for row in inventory:
        assert CTX_NAME.match(row["file_name"]), row["file_name"]
        with rasterio.open(scenes_dir / f"{row['file_name']}.tif") as ds:
            assert (ds.count, ds.dtypes[0], ds.nodata) == (1, "uint8", 0)
            assert (ds.height, ds.width) == (int(row["height"]), int(row["width"]))
            assert ds.block_shapes[0] == (256, 256)
            assert ds.compression is not None and ds.compression.value.lower() == "deflate"
            assert ds.res == (6.0, 6.0)
            params = ds.crs.to_dict()
            assert params["proj"] == "eqc" and float(params["R"]) == MARS_RADIUS_M
            lat = int(row["file_name"][-7:-5]) * (1 if row["file_name"][-5] == "N" else -1)
            centre_y = (ds.transform @ (ds.width / 2, ds.height / 2))[1]
            assert abs(np.degrees(centre_y / MARS_RADIUS_M) - lat) < 0.01
        with rasterio.open(scenes_dir / f"{row['file_name']}_mask.tif") as mask:
            assert mask.transform == ds.transform and mask.crs == ds.crs


def test_mask_holds_exactly_the_planted_impacts_inside_valid_data(scenes_dir: Path) -> None:
    for image_path in sorted(scenes_dir.glob("*[0-9]W.tif")):
        image = rasterio.open(image_path).read(1)
        mask = rasterio.open(image_path.with_name(image_path.stem + "_mask.tif")).read(1)
        objects = list(csv.DictReader(image_path.with_name(image_path.stem + "_objects.csv").open()))
        impacts = np.array([[float(o["row"]), float(o["col"])] for o in objects if o["kind"] == "impact"])
        labels, count = ndimage.label(mask, structure=np.ones((3, 3)))
        assert count == len(impacts) >= 1
        for centre in ndimage.center_of_mass(mask, labels, range(1, count + 1)):
            assert np.hypot(*(impacts - np.array(centre)).T).min() < 8
        assert not np.any(mask[image == 0]), "impact pixels in the no-data border"
        assert np.any(image == 0), "no black no-data border"
        corners = [image[0, 0], image[0, -1], image[-1, 0], image[-1, -1]]
        assert corners.count(0) >= 2, "a rotated footprint leaves black corners"


def test_look_alikes_are_planted_and_impacts_are_rare(tmp_path: Path) -> None:
    summaries = synth_scenes(tmp_path, SynthConfig(count=3, seed=2, size=(2048, 1536)))
    for s in summaries:
        assert 0.001 < s.impact_fraction < 0.012
        assert s.counts["crater"] >= 3 and s.counts["impact"] >= 5
        assert s.counts["shadow"] + s.counts["dune"] >= 1


def test_windows_render_the_same_pixels_as_the_whole_scene() -> None:
    _, spec = scene_spec(SynthConfig(seed=4, size=(700, 600)), 0)
    whole_image, whole_mask = render_window(spec, 0, 0, 700, 600)
    image, mask = render_window(spec, 300, 257, 211, 300)
    assert np.array_equal(image, whole_image[300:511, 257:557])
    assert np.array_equal(mask, whole_mask[300:511, 257:557])


def test_without_mask_leaves_the_last_scenes_maskless(tmp_path: Path) -> None:
    summaries = synth_scenes(tmp_path, SynthConfig(count=3, seed=1, size=(512, 512), without_mask=1))
    assert [s.has_mask for s in summaries] == [True, True, False]
    assert not (tmp_path / f"{summaries[-1].file_name}_mask.tif").exists()
    assert (tmp_path / f"{summaries[-1].file_name}.tif").exists()
    assert not list(tmp_path.glob("*.partial"))
