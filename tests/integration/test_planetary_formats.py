"""Planetary rasters as scenes: ISIS3 cubes, PDS3 detached labels, PDS4 and lossless JPEG2000
tile, predict and detect exactly like the same pixels stored as GeoTIFF; ISIS special pixels
are no-data, PDS scaling is applied, and a bad scene is one line while the others go on."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from rasterio.transform import from_origin
from rasterio.windows import Window

from impacts.cli import main
from impacts.scenes import SCENE_EXTENSIONS_ENV, scene_file
from tiling import formats
from tiling.io import find_scenes, open_image, open_scene, read_window
from tiling.pixels import ISIS_VALID_MIN4
from tiling.synth import MARS_EQC

NAME = "P01_001234_1800_XN_00N001W"
#: The map grid every test raster is written on (6 m pixels, Mars equirectangular).
GRID = from_origin(120_000.0, 48_000.0, 6.0, 6.0)
SIZE = (320, 384)
#: 32-bit real ISIS special pixels: NULL, LRS, LIS, HIS, HRS (0xFF7FFFFB..0xFF7FFFFF).
ISIS_SPECIAL_REAL = np.frombuffer(bytes.fromhex("fbff7ffffcff7ffffdff7ffffeff7fffffff7fff"), dtype="<f4")

Writer = Callable[[Path, str, np.ndarray, float | None], None]


def _gdal_writer(driver: str, ext: str, **options: str) -> Writer:
    def write(folder: Path, stem: str, array: np.ndarray, nodata: float | None) -> None:
        with rasterio.open(
            folder / f"{stem}{ext}",
            "w",
            driver=driver,
            height=array.shape[0],
            width=array.shape[1],
            count=1,
            dtype=array.dtype.name,
            crs=MARS_EQC,
            transform=GRID,
            nodata=nodata,
            **options,
        ) as dst:
            dst.write(array, 1)

    return write


def write_pds3(
    folder: Path,
    stem: str,
    array: np.ndarray,
    nodata: float | None,
    scale: float | None = None,
    offset: float | None = None,
    data_name: str | None = None,
) -> Path:
    """A raw little-endian image ``STEM.IMG`` (or ``data_name``) under a hand-written detached
    label ``STEM.lbl``."""
    sample_type = {"u": "LSB_UNSIGNED_INTEGER", "i": "LSB_INTEGER"}[array.dtype.kind]
    data_name = data_name or f"{stem}.IMG"
    array.astype(array.dtype.newbyteorder("<")).tofile(folder / data_name)
    lines = [
        "PDS_VERSION_ID = PDS3",
        "RECORD_TYPE = FIXED_LENGTH",
        f"RECORD_BYTES = {array.shape[1] * array.itemsize}",
        f"FILE_RECORDS = {array.shape[0]}",
        f'^IMAGE = ("{data_name}", 1)',
        "OBJECT = IMAGE",
        f"  LINES = {array.shape[0]}",
        f"  LINE_SAMPLES = {array.shape[1]}",
        f"  SAMPLE_TYPE = {sample_type if array.itemsize > 1 else 'UNSIGNED_INTEGER'}",
        f"  SAMPLE_BITS = {array.itemsize * 8}",
        "  BANDS = 1",
    ]
    lines += [f"  MISSING_CONSTANT = {nodata:g}"] if nodata is not None else []
    lines += [f"  SCALING_FACTOR = {scale}"] if scale is not None else []
    lines += [f"  OFFSET = {offset}"] if offset is not None else []
    lines += ["END_OBJECT = IMAGE", "END", ""]
    label = folder / f"{stem}.lbl"
    label.write_text("\r\n".join(lines))
    return label


def _pds3_writer(folder: Path, stem: str, array: np.ndarray, nodata: float | None) -> None:
    write_pds3(folder, stem, array, nodata)


WRITERS: dict[str, Writer] = {
    "isis3": _gdal_writer("ISIS3", ".cub"),
    "pds4": _gdal_writer("PDS4", ".xml"),
    "jp2": _gdal_writer("JP2OpenJPEG", ".jp2", QUALITY="100", REVERSIBLE="YES"),
    "pds3": _pds3_writer,
}
#: Formats whose files carry the map grid (a hand-written PDS3 label here has none).
GEOREFERENCED = {"geotiff", "isis3", "pds4", "jp2"}


@pytest.fixture(scope="module")
def pixels(scenes_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """A 320x384 crop of a synthetic scene around its first impact, with no-data border
    pixels, clipped to ISIS's 8-bit valid range (1..254; 0 = no-data)."""
    image_path = sorted(p for p in scenes_dir.glob("*.tif") if not p.stem.endswith("_mask"))[0]
    with (
        rasterio.open(image_path) as img,
        rasterio.open(image_path.with_name(f"{image_path.stem}_mask.tif")) as m,
    ):
        mask = m.read(1)
        rows, cols = np.nonzero(mask)
        row0 = int(np.clip(rows[0] - SIZE[0] // 2, 0, img.height - SIZE[0]))
        col0 = int(np.clip(cols[0] - SIZE[1] // 2, 0, img.width - SIZE[1]))
        window = Window(col0, row0, SIZE[1], SIZE[0])
        image = np.minimum(img.read(1, window=window), 254)
        crop = (mask[row0 : row0 + SIZE[0], col0 : col0 + SIZE[1]] != 0).astype(np.uint8)
    image[:, :12] = 0  # a no-data border, as map-projected strips have
    assert crop.any() and image.min() == 0 and image.max() <= 254
    return image, crop


def _scene_folder(root: Path, fmt: str, image: np.ndarray, mask: np.ndarray) -> Path:
    folder = root / fmt
    folder.mkdir()
    if fmt == "geotiff":
        _gdal_writer("GTiff", ".tif")(folder, NAME, image, 0)
        _gdal_writer("GTiff", ".tif")(folder, f"{NAME}_mask", mask, None)
    else:
        WRITERS[fmt](folder, NAME, image, 0)
        WRITERS[fmt](folder, f"{NAME}_mask", mask, None)
    return folder


def _invoke(*args: str) -> str:
    result = CliRunner().invoke(main, ["-q", *args])
    assert result.exit_code == 0, result.output
    return result.output


def _tile(scenes: Path, out: Path) -> dict[str, bytes]:
    _invoke("tile", "--scenes", str(scenes), "--out", str(out), "--workers", "1", "--seed", "3")
    found = {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    assert any(k.endswith(".tfrecord") for k in found), sorted(found)
    return {k: v for k, v in found.items() if not k.endswith(".json")}  # summaries hold paths, times


def _predict(bundle: Path, scenes: Path, out: Path) -> tuple[np.ndarray, list[dict[str, str]]]:
    import csv

    _invoke("predict", "--model", str(bundle), str(scenes), "--out", str(out), "--window-px", "128",
            "--overlap-px", "32", "--threshold", "0.3")  # fmt: skip
    with rasterio.open(out / f"{NAME}_prob.tif") as prob:
        probability = prob.read(1)
    return probability, list(csv.DictReader((out / f"{NAME}_detections.csv").open()))


@pytest.mark.parametrize("dtype", ["uint8", "uint16"])
def test_every_format_tiles_and_predicts_like_the_same_pixels_as_geotiff(
    pixels: tuple[np.ndarray, np.ndarray], untrained_bundle: Path, tmp_path: Path, dtype: str
) -> None:
    image, mask = pixels
    image = image if dtype == "uint8" else image.astype(np.uint16) * 257  # 0 stays no-data
    reference = _scene_folder(tmp_path, "geotiff", image, mask)
    tiles = _tile(reference, tmp_path / "tiles-geotiff")
    prob, detections = _predict(untrained_bundle, reference, tmp_path / "pred-geotiff")
    assert detections, "the comparison needs detections"
    pixel_fields = ("row_min", "col_min", "row_max", "col_max", "area_px", "score")
    for fmt in WRITERS:
        folder = _scene_folder(tmp_path, fmt, image, mask)
        [scene] = find_scenes(folder)
        assert scene.name == NAME and scene.mask is not None
        with open_scene(scene) as (image_ds, mask_ds, info):
            assert info.dtype == dtype and info.nodata == 0
            np.testing.assert_array_equal(read_window(image_ds, 0, 0, *SIZE), image)
            np.testing.assert_array_equal(read_window(mask_ds, 0, 0, *SIZE) != 0, mask != 0)
        assert _tile(folder, tmp_path / f"tiles-{fmt}") == tiles, f"{fmt}: patches differ from GeoTIFF's"
        fmt_prob, fmt_detections = _predict(untrained_bundle, folder, tmp_path / f"pred-{fmt}")
        np.testing.assert_array_equal(fmt_prob, prob, err_msg=f"{fmt}: probabilities differ")
        if fmt in GEOREFERENCED:
            assert fmt_detections == detections, f"{fmt}: detections differ"
        else:
            assert [{k: d[k] for k in pixel_fields} for d in fmt_detections] == [
                {k: d[k] for k in pixel_fields} for d in detections
            ]


def test_isis_special_pixels_are_no_data(tmp_path: Path) -> None:
    values = np.arange(3, 3 + 64 * 80, dtype=np.uint16).reshape(64, 80)
    values[0, :5] = [0, 1, 2, 65534, 65535]  # NULL, LRS, LIS, HIS, HRS
    _gdal_writer("ISIS3", ".cub")(tmp_path, "u16", values, 0)
    with open_image(tmp_path / "u16.cub") as (ds, info):
        got = read_window(ds, 0, 0, 64, 80)
    assert info.dtype == "uint16" and info.nodata == 0
    assert list(got[0, :5]) == [0] * 5
    np.testing.assert_array_equal(got[1:], values[1:])

    real = np.linspace(-5.0, 20.0, 64 * 80, dtype=np.float32).reshape(64, 80)
    real[0, :5] = ISIS_SPECIAL_REAL
    real[0, 5] = np.nan
    _gdal_writer("ISIS3", ".cub")(tmp_path, "f32", real, float(ISIS_SPECIAL_REAL[0]))
    with open_image(tmp_path / "f32.cub") as (ds, info):
        got = read_window(ds, 0, 0, 64, 80)
    assert info.dtype == "uint16" and info.nodata == 0
    assert info.pixels is not None and info.pixels.value_range == pytest.approx(
        (real.ravel()[6:].min(), 20.0)
    )
    assert list(got[0, :6]) == [0] * 6 and got[0, 6] == 1 and got[-1, -1] == 65535
    assert np.all(np.diff(got.ravel()[6:].astype(int)) > 0), "the mapping keeps the order of values"
    assert ISIS_SPECIAL_REAL.max() < ISIS_VALID_MIN4

    # The same float pixels as a GeoTIFF are the same scene pixels (the mapping is the format's
    # neither): only ISIS cubes have special pixels, so they are masked by no-data here.
    geotiff = np.where(np.isfinite(real) & (real >= ISIS_VALID_MIN4), real, np.float32(-9999))
    _gdal_writer("GTiff", ".tif")(tmp_path, "f32", geotiff, -9999)
    with open_image(tmp_path / "f32.tif") as (ds, tif_info):
        np.testing.assert_array_equal(read_window(ds, 0, 0, 64, 80), got)
    assert tif_info.pixels is not None and tif_info.pixels.value_range == info.pixels.value_range


def test_pds_scaling_is_applied(tmp_path: Path) -> None:
    raw = np.arange(-1000, -1000 + 40 * 50, dtype=np.int16).reshape(40, 50)
    raw[0, 0] = -32768  # MISSING_CONSTANT
    write_pds3(tmp_path, "signed", raw, -32768, scale=-0.5, offset=100.0)
    with open_image(tmp_path / "signed.lbl") as (ds, info):
        got = read_window(ds, 0, 0, 40, 50)
    valid = raw.ravel()[1:]
    physical = 100.0 - 0.5 * valid.astype(float)
    assert info.dtype == "uint16" and info.pixels is not None and info.pixels.scale == -0.5
    assert info.pixels.value_range == (physical.min(), physical.max())
    assert got[0, 0] == 0, "MISSING_CONSTANT is no-data"
    # A negative factor turns the image over: the largest raw value is the darkest pixel.
    assert got.ravel()[1:].argmax() == physical.argmax() and got.ravel()[-1] == 1
    expected = 1 + np.rint((physical - physical.min()) / np.ptp(physical) * 65534)
    np.testing.assert_array_equal(got.ravel()[1:], expected.astype(np.uint16))

    dn = np.arange(40 * 50, dtype=np.uint16).reshape(40, 50) % 250
    write_pds3(tmp_path, "dn", dn.astype(np.uint8), 0, scale=0.5, offset=10.0)
    with open_image(tmp_path / "dn.lbl") as (ds, info):
        np.testing.assert_array_equal(read_window(ds, 0, 0, 40, 50), dn)
    assert info.dtype == "uint8" and info.pixels is not None
    assert info.pixels.value_range == (10.0, 10.0 + 0.5 * 255), (
        "a positive scale keeps the DN, range in units"
    )


def test_bad_scenes_are_one_line_each_and_the_others_go_on(
    pixels: tuple[np.ndarray, np.ndarray],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    image, mask = pixels
    folder = _scene_folder(tmp_path, "geotiff", image, mask)
    tif = _gdal_writer("GTiff", ".tif")
    for stem, writer in [("TWO", tif), ("TWO", WRITERS["isis3"]), ("JP", WRITERS["jp2"])]:
        writer(folder, stem, image, 0)
        writer(folder, f"{stem}_mask", mask, None)
    write_pds3(folder, "GONE", image, 0, data_name="ELSEWHERE.IMG")
    (folder / "ELSEWHERE.IMG").unlink()
    write_pds3(folder, "PAIR", image, 0)  # PAIR.lbl + PAIR.IMG: one product, no mask
    assert (folder / "JP.jp2.aux.xml").is_file(), "GDAL's sidecar must be no scene"
    monkeypatch.setattr(formats, "installed_drivers", lambda: frozenset({"GTiff", "ISIS3", "PDS", "PDS4"}))

    with caplog.at_level(logging.WARNING):
        scenes = find_scenes(folder)
    assert [(s.name, s.image.name) for s in scenes] == [(NAME, f"{NAME}.tif"), ("PAIR", "PAIR.lbl")]
    lines = {r.getMessage().split(":")[0]: r.getMessage() for r in caplog.records}
    assert len(caplog.records) == 3, lines
    two = lines["scene TWO skipped"]
    assert "TWO.cub and TWO.tif" in two and "remove or rename" in two
    gone = lines["scene GONE skipped"]
    assert "GONE.lbl" in gone and "ELSEWHERE.IMG is missing" in gone
    jp = lines["scene JP skipped"]
    assert "JP.jp2" in jp and "JPEG2000" in jp and "JP2OpenJPEG" in jp and "gdal_translate" in jp

    # The command goes on with the usable scenes (PAIR has no mask: reported, not tiled).
    caplog.clear()
    output = _invoke("tile", "--scenes", str(folder), "--out", str(tmp_path / "tiles"), "--workers", "1")
    assert "TWO" in caplog.text and "GONE" in caplog.text, output
    assert (tmp_path / "tiles" / "manifest.csv").read_text().count(NAME) > 0


def test_a_scene_is_found_by_name_in_any_format_and_the_extensions_are_configurable(
    pixels: tuple[np.ndarray, np.ndarray], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    image, mask = pixels
    folder = _scene_folder(tmp_path, "pds3", image, mask)
    # The review importer and reviewed hard negatives find scene files by name.
    assert scene_file(folder, NAME) == folder / f"{NAME}.lbl"
    assert scene_file(folder, NAME, "_mask") == folder / f"{NAME}_mask.lbl"
    assert scene_file(folder, "absent") == folder / "absent.tif"
    (folder / f"{NAME}.lbl").rename(folder / f"{NAME}.LBL")
    assert [s.image.name for s in find_scenes(folder)] == [f"{NAME}.LBL"], "extensions are any case"

    monkeypatch.setenv(SCENE_EXTENSIONS_ENV, "tif, cub")
    with pytest.raises(FileNotFoundError, match="no usable scene"):
        find_scenes(folder)
    cubes = _scene_folder(tmp_path, "isis3", image, mask)
    assert [s.image.name for s in find_scenes(cubes)] == [f"{NAME}.cub"]
    with open_image(find_scenes(cubes)[0].image) as (_, info):
        assert info.driver == "ISIS3" and info.transform.almost_equals(GRID) and info.crs is not None
