"""Importing predict GeoJSON: views cut from the scenes through windowed reads, safe paths."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.windows import Window

from impacts.errors import DetectionImportError, SceneNotFoundError
from service.review import importer
from service.review.importer import import_detections, render_views
from service.review.schemas import QueueFilter
from service.review.store import ReviewStore
from tiling.windows import Box


def predict_geojson(scenes_dir: Path, out: Path, scenes: list[str] | None = None) -> Path:
    """A GeoJSON like `impacts predict` writes, with a box around every planted impact."""
    features = []
    wkt = None
    for objects in sorted(scenes_dir.glob("*_objects.csv")):
        scene = objects.name.removesuffix("_objects.csv")
        if scenes is not None and scene not in scenes:
            continue
        with rasterio.open(scenes_dir / f"{scene}.tif") as ds:
            height, width, t, wkt = ds.height, ds.width, ds.transform, ds.crs.to_wkt()
        with objects.open() as fh:
            impacts = [r for r in csv.DictReader(fh) if r["kind"] == "impact"]
        for k, r in enumerate(impacts):
            row, col, radius = float(r["row"]), float(r["col"]), float(r["radius_px"])
            box = (
                max(0, int(row - radius)),
                max(0, int(col - radius)),
                min(height - 1, int(row + radius)),
                min(width - 1, int(col + radius)),
            )
            props = {
                "id": f"{scene}-{k:05d}",
                "scene": scene,
                "centroid_row": row,
                "centroid_col": col,
                "centroid_x": float(r["x"]),
                "centroid_y": float(r["y"]),
                "row_min": box[0],
                "col_min": box[1],
                "row_max": box[2],
                "col_max": box[3],
                "area_px": int(3.14 * radius * radius),
                "score": round(0.5 + 0.1 * (k % 5), 2),
                "model_version": "unet-test",
            }
            x0, y0 = t @ (box[1], box[2] + 1)
            x1, y1 = t @ (box[3] + 1, box[0])
            ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
            features.append(
                {
                    "type": "Feature",
                    "id": props["id"],
                    "geometry": {"type": "Polygon", "coordinates": [ring]},
                    "properties": props,
                }
            )
    collection = {
        "type": "FeatureCollection",
        "name": "detections",
        "crs": {"type": "name", "properties": {"name": wkt}},
        "features": features,
    }
    out.write_text(json.dumps(collection))
    return out


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[ReviewStore]:
    store = ReviewStore.open(f"sqlite:///{tmp_path / 'review.db'}")
    yield store
    store.close()


def _png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def test_import_cuts_crop_mask_and_context_from_the_scene(
    scenes_dir: Path, tmp_path: Path, store: ReviewStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[tuple[int, int]] = []
    real_read = importer.read_window

    def spy(ds: Any, row: int, col: int, height: int, width: int) -> np.ndarray:
        reads.append((height, width))
        return real_read(ds, row, col, height, width)

    monkeypatch.setattr(importer, "read_window", spy)
    path = predict_geojson(scenes_dir, tmp_path / "all_detections.geojson")
    n = len(json.loads(path.read_text())["features"])
    assert n >= 5
    summary = import_detections(store, path, scenes_dir)
    assert (summary.features, summary.added, summary.existing, summary.scenes) == (n, n, 0, 5)
    assert reads and max(max(r) for r in reads) <= 512, "only windows are read, never a whole scene"

    page = store.queue(QueueFilter(limit=200))
    assert page.total == n
    d = page.items[0]
    with rasterio.open(scenes_dir / f"{d.scene}.tif") as ds:
        assert d.transform == tuple(ds.transform)[:6]
        assert d.crs_wkt == ds.crs.to_wkt()
        row0, col0, h, w = d.window
        assert (h, w) == (128, 128)
        assert 0 <= row0 <= ds.height - 128 and 0 <= col0 <= ds.width - 128
        expected = ds.read(1, window=Window(col0, row0, w, h))
    np.testing.assert_array_equal(_png(store.crop_png(d.id, "crop")), expected)
    mask = _png(store.crop_png(d.id, "mask"))
    assert mask.shape == (128, 128) and set(np.unique(mask)) == {0, 255}
    r0, c0 = max(d.row_min - row0, 0), max(d.col_min - col0, 0)
    r1, c1 = min(d.row_max - row0, 127), min(d.col_max - col0, 127)
    outside = mask.copy()
    outside[r0 : r1 + 1, c0 : c1 + 1] = 0
    assert not outside.any(), "the mask marks nothing outside the box"
    assert mask[r0 : r1 + 1, c0].all() and mask[r0, c0 : c1 + 1].all(), "the box outline is drawn"
    context = _png(store.crop_png(d.id, "context"))
    assert context.shape == (256, 256, 3)
    assert re.fullmatch(rf"{d.scene}-\d{{5}}@unet-test", d.key)

    again = import_detections(store, path, scenes_dir)
    assert (again.added, again.existing) == (0, n), "a second import adds nothing"


def test_render_views_stretches_uint16_like_its_context() -> None:
    rng = np.random.default_rng(0)
    scene = rng.integers(1000, 3000, size=(300, 400)).astype(np.uint16)
    scene[140:160, 190:210] = 60000  # a bright spot

    def read(row: int, col: int, height: int, width: int) -> np.ndarray:
        return scene[row : row + height, col : col + width]

    crop, mask, context, window = render_views(
        read, 300, 400, Box(row_min=140, row_max=159, col_min=190, col_max=209), 64, 256
    )
    assert window == (118, 168, 64, 64)  # the 20 px box centred: 22 spare pixels on each side
    crop_px = _png(crop)
    assert crop_px.dtype == np.uint8 and crop_px.shape == (64, 64)
    assert crop_px[30, 30] == 255 and crop_px[:10].mean() < 200
    assert _png(mask)[22, 22] == 255 and _png(mask)[30, 30] == 0  # the box corner: 140 - 118
    assert _png(context).shape == (256, 256, 3)


def _one_feature(path: Path, **props: Any) -> Path:
    base = {
        "scene": "x",
        "row_min": 1,
        "col_min": 1,
        "row_max": 5,
        "col_max": 5,
        "centroid_row": 3,
        "centroid_col": 3,
        "centroid_x": 0,
        "centroid_y": 0,
        "area_px": 9,
        "score": 0.8,
        "model_version": "v",
    }
    base.update(props)
    path.write_text(
        json.dumps({"type": "FeatureCollection", "features": [{"type": "Feature", "properties": base}]})
    )
    return path


@pytest.mark.parametrize("scene", ["../x", "a/b", "/etc/passwd", "..\\x", ""])
def test_scene_names_cannot_leave_the_scenes_folder(
    scenes_dir: Path, tmp_path: Path, sqlite_store: ReviewStore, scene: str
) -> None:
    path = _one_feature(tmp_path / "evil.geojson", scene=scene)
    with pytest.raises(DetectionImportError, match="scene"):
        import_detections(sqlite_store, path, scenes_dir)
    assert sqlite_store.queue(QueueFilter()).total == 0


def test_symlinked_scene_outside_the_folder_is_refused(scenes_dir: Path, tmp_path: Path) -> None:
    inside = tmp_path / "scenes"
    inside.mkdir()
    real = next(scenes_dir.glob("*_mask.tif"))
    (inside / "x.tif").symlink_to(real)
    with pytest.raises(DetectionImportError, match="outside"):
        importer.scene_file(inside, "x")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("{not json", "cannot be read as JSON"),
        ('{"type": "Feature"}', "FeatureCollection"),
        ('{"type": "FeatureCollection", "features": {}}', "not a list"),
        ('{"type": "FeatureCollection", "features": [{"type": "Feature"}]}', "no properties"),
    ],
)
def test_bad_files_name_the_file_and_the_fix(
    tmp_path: Path, sqlite_store: ReviewStore, text: str, match: str
) -> None:
    path = tmp_path / "bad.geojson"
    path.write_text(text)
    with pytest.raises(DetectionImportError, match=match) as info:
        import_detections(sqlite_store, path, tmp_path)
    assert str(path) in str(info.value) and "impacts predict" in str(info.value)


def test_missing_property_is_named(tmp_path: Path, sqlite_store: ReviewStore) -> None:
    path = _one_feature(tmp_path / "d.geojson")
    data = json.loads(path.read_text())
    del data["features"][0]["properties"]["score"]
    path.write_text(json.dumps(data))
    with pytest.raises(DetectionImportError, match=r"feature 0 \(score: Field required\)"):
        import_detections(sqlite_store, path, tmp_path)


def test_missing_scene_or_box_outside_it(scenes_dir: Path, tmp_path: Path, sqlite_store: ReviewStore) -> None:
    with pytest.raises(SceneNotFoundError, match="--scenes"):
        import_detections(sqlite_store, _one_feature(tmp_path / "a.geojson", scene="nope"), scenes_dir)
    scene = next(scenes_dir.glob("*_objects.csv")).name.removesuffix("_objects.csv")
    far = _one_feature(tmp_path / "b.geojson", scene=scene, row_max=5000)
    with pytest.raises(DetectionImportError, match="pass the scenes predict ran on"):
        import_detections(sqlite_store, far, scenes_dir)
    assert sqlite_store.queue(QueueFilter()).total == 0


RED, YELLOW = importer.OUTLINE_RGB, importer.CLIPPED_RGB
BIG = (3000, 2000)  # a scene's rows and columns


def _has(view: np.ndarray, rgb: tuple[int, int, int]) -> bool:
    return bool(np.all(view == np.array(rgb, np.uint8), axis=-1).any())


@pytest.mark.parametrize(
    ("box", "clipped"),
    [
        (
            Box(row_min=5, row_max=2990, col_min=3, col_max=1995),
            True,
        ),  # a weak model's detection covering most of the scene
        (
            Box(row_min=0, row_max=2999, col_min=1000, col_max=1000),
            True,
        ),  # taller than the view and one pixel wide
        (Box(row_min=0, row_max=0, col_min=0, col_max=0), False),  # one pixel in the top-left corner
        (
            Box(row_min=2990, row_max=2999, col_min=1990, col_max=1999),
            False,
        ),  # touching the bottom and right edges
        (
            Box(row_min=1500, row_max=1500, col_min=0, col_max=1999),
            True,
        ),  # one pixel high, from the left edge to the right
    ],
)
def test_every_box_gets_its_views_and_a_box_larger_than_the_view_is_clipped(box: Box, clipped: bool) -> None:
    scene = np.random.default_rng(1).integers(60, 200, size=BIG, dtype=np.uint8)

    def read(row: int, col: int, height: int, width: int) -> np.ndarray:
        assert row >= 0 and col >= 0 and row + height <= BIG[0] and col + width <= BIG[1]
        return scene[row : row + height, col : col + width]

    crop, mask, context, window = render_views(read, *BIG, box, 128, 512)
    row0, col0, height, width = window
    assert (height, width) == (128, 128)
    np.testing.assert_array_equal(_png(crop), scene[row0 : row0 + 128, col0 : col0 + 128])
    assert (_png(mask) == 255).any(), "the part of the box inside the crop is outlined"
    view = _png(context)
    assert view.shape == (256, 256, 3)
    assert _has(view, RED) or _has(view, YELLOW), "the box is outlined on the context view"
    assert _has(view, YELLOW) == clipped, "sides the view cuts are yellow, and only those"
    assert box.centred(512, *BIG).contains(box) == (not clipped)


def _big_scene(folder: Path, name: str = "B01_000001_1800_XN_00N001W") -> str:
    folder.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(2).integers(1, 255, size=BIG, dtype=np.uint8)
    profile = {"driver": "GTiff", "height": BIG[0], "width": BIG[1], "count": 1, "dtype": "uint8"}
    with rasterio.open(
        folder / f"{name}.tif", "w", **profile, transform=rasterio.transform.Affine(6, 0, 0, 0, -6, 0)
    ) as ds:
        ds.write(pixels, 1)
    return name


def _features(path: Path, scene: str, boxes: list[Box]) -> Path:
    features = []
    for k, b in enumerate(boxes):
        props = {
            "id": f"{scene}-{k:05d}",
            "scene": scene,
            "row_min": b.row_min,
            "col_min": b.col_min,
            "row_max": b.row_max,
            "col_max": b.col_max,
            "centroid_row": (b.row_min + b.row_max) / 2,
            "centroid_col": (b.col_min + b.col_max) / 2,
            "centroid_x": 0.0,
            "centroid_y": 0.0,
            "area_px": b.height * b.width,
            "score": 0.9,
            "model_version": "weak",
        }
        features.append({"type": "Feature", "id": props["id"], "properties": props})
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


BOXES = [
    Box(row_min=5, row_max=2990, col_min=3, col_max=1995),
    Box(row_min=0, row_max=2999, col_min=0, col_max=1999),
    Box(row_min=0, row_max=0, col_min=0, col_max=0),
    Box(row_min=2990, row_max=2999, col_min=1990, col_max=1999),
    Box(row_min=100, row_max=120, col_min=200, col_max=215),
]


def test_a_box_larger_than_its_view_is_imported_clipped_with_the_others(
    tmp_path: Path, sqlite_store: ReviewStore, caplog: pytest.LogCaptureFixture
) -> None:
    scene = _big_scene(tmp_path / "scenes")
    path = _features(tmp_path / "d.geojson", scene, BOXES)
    caplog.set_level("WARNING", logger=importer.__name__)
    summary = import_detections(sqlite_store, path, tmp_path / "scenes")
    assert (summary.added, summary.clipped, summary.skipped) == (5, 2, 0)
    clipped_lines = [r.getMessage() for r in caplog.records if "shown clipped" in r.getMessage()]
    assert len(clipped_lines) == 2 and f"{scene}-00000" in clipped_lines[0] and "512 px" in clipped_lines[0]
    page = sqlite_store.queue(QueueFilter(limit=10))
    assert page.total == 5
    for d in page.items:
        assert _png(sqlite_store.crop_png(d.id, "context")).shape == (256, 256, 3)


def test_a_detection_whose_views_fail_is_reported_and_the_others_imported(
    tmp_path: Path,
    sqlite_store: ReviewStore,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    scene = _big_scene(tmp_path / "scenes")
    path = _features(tmp_path / "d.geojson", scene, BOXES)
    real = importer.render_views

    def flaky(read: Any, height: int, width: int, box: Box, *args: Any) -> Any:
        if box == BOXES[3]:
            raise importer.ImpactsError("window cannot be decoded")
        return real(read, height, width, box, *args)

    monkeypatch.setattr(importer, "render_views", flaky)
    summary = import_detections(sqlite_store, path, tmp_path / "scenes")
    assert (summary.added, summary.skipped, summary.existing) == (4, 1, 0)
    assert f"{scene}-00003" in caplog.text and "skipped" in caplog.text
    assert sqlite_store.queue(QueueFilter(limit=10)).total == 4
