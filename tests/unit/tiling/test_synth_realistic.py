"""The realistic preset: what it plants (read back from NAME_objects.csv), how it renders,
the density setting, CTX strip sizes and the CLI options."""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml
from click.testing import CliRunner
from scipy import ndimage

from impacts.cli import main
from impacts.config import load_config
from tiling.config import RealisticConfig, SynthConfig
from tiling.synth import OBJECT_COLUMNS, KnownObject, load_objects, scene_spec, synth_scenes
from tiling.synth_objects import LOOKALIKE_KINDS, OBJECT_KINDS
from tiling.synth_realistic import object_counts
from tiling.synth_render import render_window
from tiling.synth_sensor import draw_sensor

REPO = Path(__file__).resolve().parents[3]
CTX_NAME = re.compile(r"^[BDFGJP]\d{2}_\d{6}_\d{4}_X[IN]_\d{2}[NS]\d{3}W$")


def _realistic(**update: object) -> SynthConfig:
    return SynthConfig(count=1, difficulty="realistic", **update)  # type: ignore[arg-type]


def _write(folder: Path, cfg: SynthConfig) -> tuple[Path, list[dict[str, str]]]:
    """Write one scene; return its image path and its object rows."""
    (summary,) = synth_scenes(folder, cfg)
    image = folder / f"{summary.file_name}.tif"
    with (folder / f"{summary.file_name}_objects.csv").open(newline="") as fh:
        return image, list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def many_impacts(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, str]]]:
    """A 1024 x 1024 realistic scene with about 250 impacts (for their statistics)."""
    return _write(tmp_path_factory.mktemp("many"), _realistic(seed=8, size=(1024, 1024), impact_density=300))


def test_impact_sizes_follow_a_steep_power_law(many_impacts: tuple[Path, list[dict[str, str]]]) -> None:
    radii = np.array([float(o["radius_px"]) for o in many_impacts[1] if o["kind"] == "impact"])
    assert len(radii) >= 200
    assert np.mean(radii < 10) > 0.8, "most blast zones are under 10 px in radius"
    assert np.mean(radii < 5) > 0.5
    assert radii.max() > 15, "a few are large"
    assert radii.min() >= 2.5 and radii.max() <= 40


def test_more_than_half_the_impacts_are_clusters_and_contrast_ranges_from_faint_to_strong(
    many_impacts: tuple[Path, list[dict[str, str]]],
) -> None:
    impacts = [o for o in many_impacts[1] if o["kind"] == "impact"]
    sizes = np.array([int(o["cluster_size"]) for o in impacts])
    assert 0.5 < np.mean(sizes > 1) < 0.7
    assert sizes.min() == 1 and sizes.max() <= 12
    contrast = np.array([float(o["contrast"]) for o in impacts])
    assert contrast.min() < 0.1 and contrast.max() > 0.45
    assert np.median(contrast) < 0.3, "many are faint"


def test_one_mask_component_per_impact_within_its_radius(
    many_impacts: tuple[Path, list[dict[str, str]]],
) -> None:
    image_path, rows = many_impacts
    with rasterio.open(image_path) as ds:
        image = ds.read(1)
    with rasterio.open(image_path.with_name(image_path.stem + "_mask.tif")) as ds:
        mask = ds.read(1)
    impacts = np.array(
        [[float(o["row"]), float(o["col"]), float(o["radius_px"])] for o in rows if o["kind"] == "impact"]
    )
    labels, count = ndimage.label(mask, structure=np.ones((3, 3)))
    assert count == len(impacts), "a cluster is one impact: one halo, one component"
    for label in range(1, count + 1):
        r, c = np.nonzero(labels == label)
        dist = np.hypot(impacts[:, 0, None] - r, impacts[:, 1, None] - c)
        owner = int(np.argmin(dist.mean(axis=1)))
        assert dist[owner].max() <= impacts[owner, 2] + 0.75, "the row's radius covers its whole halo"
    assert not np.any(mask[image == 0])


def test_every_lookalike_kind_is_planted_at_its_configured_count(tmp_path: Path) -> None:
    cfg = _realistic(seed=4, size=(1536, 1536))
    _, spec = scene_spec(cfg, 0)
    valid_mpx = 4 * spec.footprint.half_h * spec.footprint.half_w / 1e6
    expected = object_counts(cfg.realistic, valid_mpx, None)
    _, rows = _write(tmp_path, cfg)
    counts = Counter(o["kind"] for o in rows)
    assert set(counts) == set(OBJECT_KINDS)
    assert {k: counts[k] for k in LOOKALIKE_KINDS} == {k: expected[k] for k in LOOKALIKE_KINDS}
    assert counts["impact"] == expected["impact"] == round(cfg.realistic.impacts.per_mpx * valid_mpx)
    assert all(counts[k] >= 1 for k in OBJECT_KINDS)
    # Each kind as dense as configured, per megapixel of valid data.
    per_mpx = cfg.realistic.lookalikes_per_mpx.model_dump()
    for kind in LOOKALIKE_KINDS:
        assert counts[kind] == pytest.approx(per_mpx[kind] * valid_mpx, abs=0.5)


def test_objects_csv_keeps_its_columns_and_load_objects_reads_every_kind(tmp_path: Path) -> None:
    image, rows = _write(tmp_path, _realistic(seed=5, size=(1024, 1024)))
    path = image.with_name(image.stem + "_objects.csv")
    header = path.read_text().splitlines()[0].split(",")
    assert header[:7] == ["id", "kind", "row", "col", "radius_px", "x", "y"]
    assert header == OBJECT_COLUMNS
    objects = load_objects(path)
    assert [o.kind for o in objects] == [r["kind"] for r in rows]
    impacts = [o for o in objects if o.kind == "impact"]
    assert impacts and all(o.contrast is not None and o.cluster_size >= 1 for o in impacts)
    assert all(o.contrast is None and o.cluster_size == 1 for o in objects if o.kind != "impact")
    assert all(r["cluster_size"] == r["contrast"] == "" for r in rows if r["kind"] != "impact")


def test_load_objects_reads_lists_without_the_new_columns_and_ignores_unknown_ones(tmp_path: Path) -> None:
    old = tmp_path / "old_objects.csv"
    old.write_text("id,kind,row,col,radius_px,x,y\n0,impact,10.5,20.0,4.0,1.0,2.0\n")
    extra = tmp_path / "extra_objects.csv"
    extra.write_text(
        "id,kind,row,col,radius_px,x,y,cluster_size,contrast,note\n"
        "0,impact,1,2,3,4,5,4,0.25,a\n1,slope_streak,6,7,80,9,10,,,b\n"
    )
    assert load_objects(old) == [KnownObject("impact", 10.5, 20.0, 4.0)]
    assert load_objects(extra) == [
        KnownObject("impact", 1.0, 2.0, 3.0, cluster_size=4, contrast=0.25),
        KnownObject("slope_streak", 6.0, 7.0, 80.0),
    ]


def _digest(folder: Path) -> str:
    return hashlib.sha256(
        b"".join(p.read_bytes() for p in sorted(folder.iterdir()) if p.name != "run.json")
    ).hexdigest()


def test_same_seed_writes_the_same_realistic_scene_and_another_seed_differs(tmp_path: Path) -> None:
    cfg = _realistic(seed=3, size=(512, 640), impact_density=40)
    synth_scenes(tmp_path / "a", cfg)
    synth_scenes(tmp_path / "b", cfg)
    synth_scenes(tmp_path / "c", cfg.model_copy(update={"seed": 4}))
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


def test_windows_render_the_same_pixels_as_the_whole_realistic_scene() -> None:
    # Dense enough that impacts, tracks and streaks cross the window edges.
    cfg = _realistic(seed=6, size=(700, 600), impact_density=150)
    cfg.realistic.lookalikes_per_mpx.dust_devil_track = 20.0
    cfg.realistic.lookalikes_per_mpx.slope_streak = 20.0
    _, spec = scene_spec(cfg, 0)
    whole_image, whole_mask = render_window(spec, 0, 0, 700, 600)
    for row0, col0, h, w in [(300, 257, 211, 300), (0, 0, 256, 256), (433, 511, 267, 89)]:
        image, mask = render_window(spec, row0, col0, h, w)
        assert np.array_equal(image, whole_image[row0 : row0 + h, col0 : col0 + w])
        assert np.array_equal(mask, whole_mask[row0 : row0 + h, col0 : col0 + w])


def _windows_with_impacts(cfg: SynthConfig) -> float:
    """Share of the 128 px windows (grid, mostly valid data) holding impact pixels."""
    _, spec = scene_spec(cfg, 0)
    image, mask = render_window(spec, 0, 0, spec.height, spec.width)
    shares = [
        mask[r : r + 128, c : c + 128].any()
        for r in range(0, spec.height - 127, 128)
        for c in range(0, spec.width - 127, 128)
        if (image[r : r + 128, c : c + 128] > 0).mean() > 0.5
    ]
    return float(np.mean(shares))


def test_density_makes_dense_scenes_where_most_windows_hold_an_impact() -> None:
    dense = _realistic(seed=3, size=(1024, 1024), impact_density=250)
    assert _windows_with_impacts(dense) > 0.9
    assert _windows_with_impacts(dense.model_copy(update={"impact_density": None})) < 0.3
    _, spec = scene_spec(dense, 0)
    valid_mpx = 4 * spec.footprint.half_h * spec.footprint.half_w / 1e6
    assert sum(o.kind == "impact" for o in spec.objects) == round(250 * valid_mpx)


def test_density_also_sets_the_impact_count_of_the_classic_presets() -> None:
    cfg = SynthConfig(seed=2, size=(1024, 1024), difficulty="easy", impact_density=10)
    _, spec = scene_spec(cfg, 0)
    valid_mpx = 4 * spec.footprint.half_h * spec.footprint.half_w / 1e6
    assert sum(o.kind == "impact" for o in spec.objects) == round(10 * valid_mpx)


def test_strips_are_ctx_like_in_name_and_size() -> None:
    cfg = SynthConfig(strips=True, difficulty="realistic")
    for index in range(12):
        name, spec = scene_spec(cfg, index)
        assert CTX_NAME.match(name.text)
        assert 3100 <= spec.width <= 7000  # the CTX swath is about 5,000 px
        # The scientists' 19 scenes range from 0.89 to 5.9 times as long as wide.
        assert 0.85 <= spec.height / spec.width <= 6.05
    # Sizes are drawn before anything else, so only the size changes with --strips.
    assert scene_spec(cfg, 0)[0] == scene_spec(cfg.model_copy(update={"strips": False}), 0)[0]


def test_sensor_stripes_columns_and_drifts_along_the_strip() -> None:
    look = RealisticConfig().ctx.model_copy(update={"noise_grey": 0.0})
    sensor = draw_sensor(look, np.random.default_rng(0))
    flat = sensor.apply(np.full((6000, 400), 100.0, dtype=np.float32), 0, 0)
    columns = flat.mean(axis=0)
    assert np.std(np.diff(columns)) > 1.0, "column-to-column striping"
    rows = flat.mean(axis=1)
    assert rows.max() - rows.min() > 5, "gain and brightness drift along the strip"
    assert np.allclose(
        sensor.apply(np.full((50, 30), 100.0, np.float32), 2000, 170), flat[2000:2050, 170:200]
    )


@pytest.mark.parametrize("name", ["synth.yaml", "synth-realistic.yaml", "synth-dense.yaml"])
def test_synth_configs_hold_every_key_and_the_realistic_preset(name: str) -> None:
    path = REPO / "configs" / name
    cfg = load_config(path, SynthConfig)
    assert cfg.model_dump(mode="json") == yaml.safe_load(path.read_text())
    assert cfg.realistic == RealisticConfig(), "the files show the preset as the code defines it"


def test_cli_writes_realistic_dense_scenes(tmp_path: Path) -> None:
    out = tmp_path / "s"
    args = ["-q", "synth", "--out", str(out), "--count", "1", "--size", "512x512"]
    result = CliRunner().invoke(main, [*args, "--difficulty", "realistic", "--density", "120", "--strips"])
    assert result.exit_code == 0, result.output
    config = json.loads((out / "run.json").read_text())["config"]
    assert (config["difficulty"], config["impact_density"], config["strips"]) == ("realistic", 120.0, True)
    assert "look-alikes=" in result.output
    objects = next(out.glob("*_objects.csv"))
    assert sum(o.kind == "impact" for o in load_objects(objects)) > 15
    bad = CliRunner().invoke(main, [*args, "--density", "0"])
    assert bad.exit_code != 0 and "--density" in bad.output
