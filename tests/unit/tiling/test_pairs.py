"""An earlier image: finding it, reading it on the scene grid, registering it."""

from __future__ import annotations

import json
import math
import resource
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.transform import Affine
from rasterio.warp import reproject
from scipy import ndimage

from impacts.errors import SceneError, SceneNotFoundError
from tiling.crs import MARS_EQC, MARS_RADIUS_M
from tiling.io import SceneInfo, open_image, read_window
from tiling.pairs import before_path, open_before, read_pairs, shifted_transform
from tiling.registration import (
    Registration,
    read_registration,
    register,
    register_files,
    window_shift,
    write_registration,
)

#: A scene grid near 30 E, 10 N on the Mars sphere (equirectangular, clon 0), 6 m/px.
RES_M = 6.0
X0 = MARS_RADIUS_M * math.radians(30.0)
Y0 = MARS_RADIUS_M * math.radians(10.0)
SINU_30 = CRS.from_proj4(f"+proj=sinu +lon_0=30 +R={MARS_RADIUS_M} +units=m +no_defs")
EQC_30 = CRS.from_proj4(f"+proj=eqc +lon_0=30 +R={MARS_RADIUS_M} +units=m +no_defs")


def scene_grid(height: int, width: int, dtype: str = "uint16") -> SceneInfo:
    return SceneInfo(
        name="S01",
        height=height,
        width=width,
        dtype=dtype,
        nodata=0.0,
        crs=MARS_EQC,
        transform=Affine(RES_M, 0, X0, 0, -RES_M, Y0),
        block_shape=(256, 256),
    )


def texture(height: int, width: int, seed: int) -> np.ndarray:
    """Smooth noise plus dark and bright blobs, 0..1."""
    rng = np.random.default_rng(seed)
    img = ndimage.gaussian_filter(rng.normal(size=(height, width)), 3.0)
    img += 0.5 * ndimage.gaussian_filter(rng.normal(size=(height, width)), 12.0)
    blobs = np.zeros((height, width))
    count = height * width // 4000
    blobs[rng.integers(0, height, count), rng.integers(0, width, count)] = rng.choice([-1.0, 1.5], count)
    img += 40 * ndimage.gaussian_filter(blobs, 4.0)
    return (img - img.min()) / (img.max() - img.min())


def write(
    path: Path, data: np.ndarray, crs: CRS, transform: Affine, nodata: float | None = None, **kw: object
) -> Path:
    profile = {"count": 1, "dtype": str(data.dtype), "crs": crs, "transform": transform, "nodata": nodata}
    profile.setdefault("driver", "GTiff")
    profile.update(kw)
    with rasterio.open(path, "w", height=data.shape[0], width=data.shape[1], **profile) as dst:
        dst.write(data, 1)
    return path


def to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(20 + 220 * img), 1, 255).astype(np.uint8)


def read_all(view: object, info: SceneInfo, step: tuple[int, int] = (70, 90)) -> np.ndarray:
    """The whole view, read in uneven windows."""
    out = np.zeros((info.height, info.width), dtype=info.dtype)
    for row in range(0, info.height, step[0]):
        for col in range(0, info.width, step[1]):
            h, w = min(step[0], info.height - row), min(step[1], info.width - col)
            out[row : row + h, col : col + w] = read_window(view, row, col, h, w)
    return out


# ---- reading on the scene grid --------------------------------------------------------------


@pytest.mark.parametrize(
    ("crs", "res_m", "dtype", "nodata"),
    [(SINU_30, 7.3, "uint16", 0), (EQC_30, 4.1, "uint16", 65535), (SINU_30, 5.2, "float32", -1.0)],
)
def test_warped_windows_equal_a_whole_reprojection(
    tmp_path: Path, crs: CRS, res_m: float, dtype: str, nodata: float
) -> None:
    info = scene_grid(240, 260)
    # The earlier image: another projection (x = 0 at 30 E) and resolution, over the scene's
    # top and left with a margin but short of its right edge, with a hole.
    left, top = -400.0, Y0 + 300
    size = (int(1900 / res_m), int(1700 / res_m))
    img = texture(*size, seed=1)
    data = (1000 + 60000 * img).astype(dtype) if dtype == "uint16" else (img * 3.5 - 0.5).astype(dtype)
    data[20:60, 30:90] = nodata
    src_transform = Affine(res_m, 0, left, 0, -res_m, top)
    path = write(tmp_path / "S01_before.tif", data, crs, src_transform, nodata=nodata)

    with rasterio.open(path) as src:
        expected = np.full((info.height, info.width), nodata, dtype=dtype)
        reproject(
            src.read(1),
            expected,
            src_transform=src_transform,
            src_crs=crs,
            src_nodata=nodata,
            dst_transform=info.transform,
            dst_crs=info.crs,
            dst_nodata=nodata,
            resampling=Resampling.bilinear,
        )
    with open_before(path, info) as view:
        got = read_all(view, info)

    valid = expected != nodata
    assert 0.05 < 1 - valid.mean() < 0.5, "the hole and the margin leave some no-data"
    assert np.array_equal(got == 0, ~valid), "no-data where the earlier image has none or no pixels"
    if dtype == "uint16":  # read as stored: the very values of the reprojection
        diff = np.abs(got.astype(np.int64) - expected.astype(np.int64))[valid]
    else:  # a float product is stretched onto 1..65535 by its own value range
        lo, hi = float(data[data != nodata].min()), float(data[data != nodata].max())
        mapped = 1 + np.rint((expected.astype(np.float64) - lo) / (hi - lo) * 65534)
        diff = np.abs(got.astype(np.float64) - mapped)[valid]
    assert diff.max() <= 1, "windows read the same values as a whole-image warp"
    assert (diff == 0).mean() > 0.99


def test_view_has_the_scene_pixel_type_and_nodata(tmp_path: Path) -> None:
    info = scene_grid(64, 64, dtype="uint8")
    data = np.full((80, 80), 65535, dtype="uint16")
    data[:, :40] = 128  # 128/65535 becomes 0.5 in uint8: nudged off the scene's no-data
    data[10:14] = 0  # the earlier image's no-data, over the scene's first rows
    write(tmp_path / "b.tif", data, MARS_EQC, Affine(RES_M, 0, X0 - 60, 0, -RES_M, Y0 + 60), nodata=0)
    with open_before(tmp_path / "b.tif", info) as view:
        got = read_window(view, 0, 0, 64, 64)
    assert got.dtype == np.uint8
    assert (got[5:, 50:] == 255).all(), "uint16 top becomes uint8 top"
    assert (got[5:, 5:30] == 1).all(), "a valid pixel never reads as no-data"
    assert (got[:3] == 0).all(), "the earlier image's no-data"


def test_a_window_reads_only_what_it_needs(tmp_path: Path) -> None:
    """A 2.4 GB earlier image (sparse file) under a 20,000 x 20,000 scene grid: a window
    costs a few MB and well under a second, never the whole image or grid."""
    info = scene_grid(20_000, 20_000)
    side, res = 35_000, 3.5
    transform = Affine(res, 0, X0 - 1000, 0, -res, Y0 + 1000)
    path = tmp_path / "big_before.tif"
    with rasterio.open(
        path, "w", driver="GTiff", height=side, width=side, count=1, dtype="uint16", crs=MARS_EQC,
        transform=transform, nodata=0, tiled=True, blockxsize=256, blockysize=256, SPARSE_OK="TRUE",
        compress="deflate",
    ) as dst:  # fmt: skip
        patch = (1000 + 50000 * texture(1024, 1024, seed=3)).astype("uint16")
        dst.write(patch, 1, window=rasterio.windows.Window(1024, 1024, 1024, 1024))
    before_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    with open_before(path, info) as view:
        window = read_window(view, 600, 600, 256, 256)
    elapsed = time.perf_counter() - started
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before_rss) / 1024
    assert (window != 0).all(), "the window lies on the written patch"
    assert grown_mb < 150, f"peak memory grew {grown_mb:.0f} MB"
    assert elapsed < 5


def test_no_crs_is_refused(tmp_path: Path) -> None:
    info = scene_grid(32, 32)
    path = write(tmp_path / "b.tif", np.ones((32, 32), "uint8"), None, Affine(1, 0, 5, 0, -1, 5))
    with pytest.raises(SceneError, match=r"no CRS.*gdal_edit"), open_before(path, info):
        pass


# ---- registration ---------------------------------------------------------------------------


def planted_pair(
    tmp_path: Path, offset: tuple[float, float], size: tuple[int, int] = (512, 512), cover: float = 1.0
) -> tuple[Path, Path]:
    """A scene and an earlier image of the same ground whose features lie ``offset`` scene
    pixels away, with its own noise and gain (another date)."""
    info = scene_grid(*size)
    margin = 16
    ground = texture(size[0] + 2 * margin, size[1] + 2 * margin, seed=7)
    ground_transform = info.transform @ Affine.translation(-margin, -margin)
    scene = to_uint8(ground[margin:-margin, margin:-margin])
    scene_path = write(tmp_path / "S01.tif", scene, MARS_EQC, info.transform, nodata=0)
    rng = np.random.default_rng(11)
    later = np.clip(0.8 * ground + 0.1 + rng.normal(0, 0.02, ground.shape), 0, 1)
    before = to_uint8(later)
    if cover < 1.0:
        before[:, int(cover * before.shape[1]) :] = 0
        before[int(cover * before.shape[0]) :, :] = 0
    before_path = write(
        tmp_path / "S01_before.tif", before, MARS_EQC, shifted_transform(ground_transform, offset), nodata=0
    )
    return scene_path, before_path


@pytest.mark.parametrize("offset", [(3.0, -2.0), (2.3, -1.7), (-4.6, 0.4)])
def test_registration_recovers_planted_offsets(tmp_path: Path, offset: tuple[float, float]) -> None:
    scene, before = planted_pair(tmp_path, offset)
    reg = register_files(scene, before)
    assert abs(reg.offset.rows - offset[0]) < 0.5
    assert abs(reg.offset.cols - offset[1]) < 0.5
    assert reg.offset.windows >= 3
    assert reg.offset.spread_px < 0.5
    assert reg.coverage > 0.9
    # The corrected view lines up with the scene: no offset left between them.
    with open_image(scene) as (reader, info), open_before(before, info, reg) as view:
        left = window_shift(read_window(reader, 128, 128, 256, 256), read_window(view, 128, 128, 256, 256))
        again = register(reader, view, info)
    assert math.hypot(*left) < 0.3
    assert again.offset_at(0) == pytest.approx(reg.offset_at(0)), "measured against the uncorrected view"


def test_window_shift_is_sub_pixel_on_a_pure_shift() -> None:
    img = texture(160, 160, seed=5)
    shifted = ndimage.shift(img, (2.3, -1.7), order=3, mode="nearest")
    rows, cols = window_shift(img[16:144, 16:144], shifted[16:144, 16:144])
    assert abs(rows - 2.3) < 0.15
    assert abs(cols + 1.7) < 0.15


def test_regions_follow_a_drifting_strip(tmp_path: Path) -> None:
    """A 6,144-row strip whose offset drifts from (1, -2) to (3, 0): each 2,048-row region
    gets the offset at its centre."""
    height, width = 6144, 320
    info = scene_grid(height, width, dtype="uint8")
    ground = texture(height, width, seed=9)
    rows = np.arange(height, dtype=np.float64)

    def drift(row: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return 1.0 + 2.0 * row / height, -2.0 + 2.0 * row / height

    dr, dc = drift(rows)
    rr, cc = np.meshgrid(rows, np.arange(width, dtype=np.float64), indexing="ij")
    # Features at (r, c) of the scene appear at (r + dr, c + dc) of the earlier image.
    later = ndimage.map_coordinates(ground, [rr - dr[:, None], cc - dc[:, None]], order=3, mode="nearest")
    scene_path = write(tmp_path / "S01.tif", to_uint8(ground), MARS_EQC, info.transform, nodata=0)
    before = write(tmp_path / "S01_before.tif", to_uint8(later), MARS_EQC, info.transform, nodata=0)
    reg = register_files(scene_path, before)
    assert [(r.row_start, r.row_stop) for r in reg.regions] == [(0, 2048), (2048, 4096), (4096, 6144)]
    for region in reg.regions:
        want = drift(np.array([(region.row_start + region.row_stop) / 2]))
        assert abs(region.rows - want[0][0]) < 0.5 and abs(region.cols - want[1][0]) < 0.5
        assert region.windows >= 3 and region.spread_px < 0.8  # the drift within a region: 0.94 px
    assert reg.offset.spread_px > reg.regions[0].spread_px, "the drift shows in the scene's spread"
    mid = reg.offset_at(3072)
    assert abs(mid[0] - 2.0) < 0.5 and abs(mid[1] + 1.0) < 0.5


def test_tiny_overlap_is_refused(tmp_path: Path) -> None:
    scene, before = planted_pair(tmp_path, (1.0, 1.0), size=(256, 256), cover=0.3)
    with pytest.raises(SceneError, match=r"S01.*S01_before.*covers \d+% of the scene.*same ground"):
        register_files(scene, before)


def test_textureless_image_is_refused(tmp_path: Path) -> None:
    info = scene_grid(256, 256, dtype="uint8")
    rng = np.random.default_rng(0)
    flat = np.clip(120 + rng.normal(0, 0.6, (256, 256)), 1, 255).astype("uint8")
    scene = write(tmp_path / "S01.tif", flat, MARS_EQC, info.transform, nodata=0)
    before = write(tmp_path / "S01_before.tif", flat[::-1].copy(), MARS_EQC, info.transform, nodata=0)
    with pytest.raises(SceneError, match=r"S01.*S01_before.*cannot be estimated.*textured"):
        register_files(scene, before)


def test_disagreeing_windows_are_refused(tmp_path: Path) -> None:
    """Two unrelated textures: every window finds a different offset."""
    info = scene_grid(512, 512, dtype="uint8")
    scene = write(tmp_path / "S01.tif", to_uint8(texture(512, 512, 1)), MARS_EQC, info.transform, nodata=0)
    other = write(
        tmp_path / "S01_before.tif", to_uint8(texture(512, 512, 2)), MARS_EQC, info.transform, nodata=0
    )
    with pytest.raises(SceneError, match=r"cannot be estimated.*disagree"):
        register_files(scene, other)


def test_registration_json_round_trip(tmp_path: Path) -> None:
    scene, before = planted_pair(tmp_path, (2.0, 1.0), size=(256, 256))
    reg = register_files(scene, before)
    path = write_registration(tmp_path, reg)
    assert path.name == "S01_registration.json"
    data = json.loads(path.read_text())
    assert set(data) == {"scene", "before", "coverage", "offset", "regions"}
    assert set(data["offset"]) == {"rows", "cols", "spread_px", "windows", "rejected"}
    assert data["regions"][0]["row_start"] == 0 and data["regions"][0]["row_stop"] == 256
    back = read_registration(path)
    assert isinstance(back, Registration)
    assert back.offset_at(10) == pytest.approx(reg.offset_at(10), abs=1e-3)
    assert not list(tmp_path.glob("*.partial"))


# ---- finding the earlier image --------------------------------------------------------------


def test_before_is_found_beside_in_another_format(tmp_path: Path) -> None:
    info = scene_grid(32, 32, dtype="uint8")
    scene = write(tmp_path / "S01.tif", np.ones((32, 32), "uint8"), MARS_EQC, info.transform)
    assert before_path(scene) is None
    cube = write(
        tmp_path / "S01_before.cub", np.full((40, 40), 77, "uint8"), MARS_EQC, info.transform, driver="ISIS3"
    )
    found = before_path(scene)
    assert found == cube
    with open_before(found, info) as view:  # any GDAL format reads through the same view
        assert (read_window(view, 0, 0, 32, 32) == 77).all()


def test_pairs_file_names_the_before_image(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    archive.mkdir()
    old = write(archive / "old.tif", np.ones((8, 8), "uint8"), MARS_EQC, scene_grid(8, 8).transform)
    (tmp_path / "scenes").mkdir()
    scene = tmp_path / "scenes" / "S01.tif"
    (tmp_path / "scenes" / "S01_before.tif").write_bytes(b"")
    pairs_csv = tmp_path / "pairs.csv"
    pairs_csv.write_text("scene,before,note\nS01,archive/old.tif,x\n")
    pairs = read_pairs(pairs_csv, scenes=["S01", "S02"])
    assert pairs == {"S01": old.absolute()}
    assert before_path(scene, pairs) == old.absolute(), "a pairs file wins over NAME_before"
    assert before_path(tmp_path / "scenes" / "S02.tif", pairs) is None


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("scene,image\nS01,old.tif\n", r"pairs\.csv: line 1: no column before.*scene,before"),
        ("scene,before\nS01,\n", r"line 2: empty scene or before"),
        ("scene,before\nS09,old.tif\n", r"line 2: scene 'S09' is not among the scenes; fix the name"),
        ("scene,before\nS01,gone.tif\n", r"line 2: earlier image .*gone\.tif of S01 not found; fix the path"),
        ("scene,before\nS01,old.tif\nS01,old.tif\n", r"line 3: scene 'S01' is already paired on line 2"),
        ("scene,before\nS01_mask,old.tif\n", r"line 2: .*not a scene name"),
    ],
)
def test_bad_pairs_rows_are_one_clear_line(tmp_path: Path, text: str, match: str) -> None:
    (tmp_path / "old.tif").write_bytes(b"")
    pairs_csv = tmp_path / "pairs.csv"
    pairs_csv.write_text(text)
    with pytest.raises(SceneError, match=match) as err:
        read_pairs(pairs_csv, scenes=["S01"])
    assert "\n" not in str(err.value)
    assert str(pairs_csv) in str(err.value)


def test_missing_pairs_file(tmp_path: Path) -> None:
    with pytest.raises(SceneNotFoundError, match="scene,before"):
        read_pairs(tmp_path / "nope.csv")
