"""``impacts synth`` and ``impacts tile [merge | add-reviewed]``: parse, load config, call library code.

Only click is imported at module level; numpy, rasterio and the library modules are
imported inside the commands so ``impacts --help`` stays fast. TensorFlow is never imported.
Options that other commands take too come from :mod:`impacts.options`.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING

import click

from impacts.options import (
    array_chunking,
    array_index_option,
    config_option,
    given_options,
    option_name,
    option_overrides,
    out_option,
    scene_list_option,
    scenes_option,
    seed_option,
    set_option,
    workers_option,
)

if TYPE_CHECKING:
    from impacts.chunks import Chunking
    from tiling.config import TileConfig

log = logging.getLogger(__name__)

SIZE_PATTERN = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")


def _size(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    match = SIZE_PATTERN.match(value)
    if not match:
        raise click.BadParameter(f"{value!r} is not HEIGHTxWIDTH, e.g. 3000x2000")
    return int(match.group(1)), int(match.group(2))


@click.command()
@out_option("Output folder for the scenes.")
@click.option("--count", type=int, default=None, help="Number of scenes [config: 4].")
@click.option(
    "--size",
    callback=_size,
    default=None,
    help="Fixed scene size HEIGHTxWIDTH in px (e.g. 40000x12000) [config: drawn per scene].",
)
@seed_option("the scenes (the same seed writes the same bytes)")
@click.option(
    "--difficulty",
    type=click.Choice(["easy", "medium", "hard", "realistic"]),
    default=None,
    help="easy/medium/hard: look-alike density and impact contrast; realistic: small, faint, "
    "clustered impacts, every classic look-alike, CTX striping and gain (settings under "
    "`realistic` in configs/synth.yaml) [config: medium].",
)
@click.option(
    "--density",
    type=click.FloatRange(min=0, min_open=True, max=2000),
    default=None,
    help="Impacts per megapixel of valid area, e.g. 200 for dense scenes where nearly every "
    "128 px window holds an impact [config: preset].",
)
@click.option(
    "--strips/--no-strips",
    default=None,
    help="Draw CTX strip sizes (about 5,000 px wide, up to 6 times as long) [config: no].",
)
@click.option(
    "--without-mask",
    type=int,
    default=None,
    help="Write the last N scenes without a mask (to exercise that path).",
)
@click.option(
    "--before/--no-before",
    default=None,
    help="Also write each scene's earlier image, NAME_before.tif (no new impacts, another "
    "grid, sun and gain, a planted misregistration), and its truth NAME_before.json "
    "(settings under `before` in configs/synth.yaml) [config: no].",
)
@config_option("configs/synth.yaml")
@set_option("difficulty=hard")
def synth(
    out_dir: Path,
    count: int | None,
    size: tuple[int, int] | None,
    seed: int | None,
    difficulty: str | None,
    density: float | None,
    strips: bool | None,
    without_mask: int | None,
    before: bool | None,
    config_path: Path | None,
    sets: tuple[str, ...],
) -> None:
    """Write CTX-like synthetic Mars scenes: NAME.tif, NAME_mask.tif, NAME_objects.csv, data.csv
    (with --before also NAME_before.tif and NAME_before.json)."""
    from tqdm import tqdm

    from impacts.config import load_config
    from impacts.provenance import write_run_record
    from tiling.config import SynthConfig
    from tiling.synth import synth_scenes

    size_text = f"[{size[0]}, {size[1]}]" if size else None
    overrides = option_overrides(
        {
            "count": count,
            "size": size_text,
            "seed": seed,
            "difficulty": difficulty,
            "impact_density": density,
            "strips": None if strips is None else str(strips).lower(),
            "without_mask": without_mask,
            "before.enabled": None if before is None else str(before).lower(),
        },
        sets,
    )
    cfg = load_config(config_path, SynthConfig, overrides)
    with tqdm(total=cfg.count, desc="writing scenes", unit="scene", disable=None) as bar:
        summaries = synth_scenes(out_dir, cfg, progress=bar.update)
    write_run_record(out_dir, cfg, cfg.seed, "synth")
    for s in summaries:
        lookalikes = sum(n for kind, n in s.counts.items() if kind != "impact")
        click.echo(
            f"{s.file_name}  {s.height}x{s.width}  impacts={s.counts['impact']}  craters={s.counts['crater']}  "
            f"look-alikes={lookalikes}  impact_px={100 * s.impact_fraction:.2f}%{'' if s.has_mask else '  (no mask)'}"
        )
        if s.before is not None:
            b = s.before
            click.echo(
                f"  {b.file_name}  {b.height}x{b.width}  {b.res_m:.2f} m/px  "
                f"shift={b.shift_row_px:+.2f},{b.shift_col_px:+.2f} px  faded={len(b.faded)}"
            )
    click.echo(f"wrote {len(summaries)} scenes to {out_dir}")


SCENES_HELP = "Folder of NAME.tif + NAME_mask.tif scenes."
PATCHES_HELP = "Patch-set folder (shards + manifest.csv)."

# Flags of `impacts tile` kept for one release (parameter name: how it was spelt, the
# subcommand that replaces it, the parameters it may still be combined with).
DEPRECATED_FLAGS: dict[str, tuple[str, str, frozenset[str]]] = {
    "reviewed_csv": ("--reviewed FILE", "add-reviewed FILE", frozenset({"scenes_dir", "out_dir"})),
    "merge_only": (
        "--merge-only",
        "merge",
        # It always took (and checked, then ignored) the tiling settings: jobs pass --config.
        frozenset({"scenes_dir", "out_dir", "seed", "config_path", "sets", "test_scenes", "workers"}),
    ),
}


@click.group(invoke_without_command=True, subcommand_metavar="[COMMAND [ARGS]...]")
@scenes_option(SCENES_HELP + "  [required to tile, or --scene-list]", required=False)
@scene_list_option("Tile")
@out_option(PATCHES_HELP + "  [required to tile]", required=False)
@seed_option("the splits, crops and sampling")
@config_option("configs/tile.yaml")
@set_option("positives_per_impact=2")
@click.option(
    "--test-scenes", default=None, help="Comma-separated scene names (no .tif) to put in the test split."
)
@workers_option("Scene processes [config: one per core].")
@array_index_option("Tile", " and skip the merge (`impacts tile merge` joins the parts)")
@click.option("--merge-only", is_flag=True, help="Deprecated: use `impacts tile merge`.")
@click.option(
    "--reviewed",
    "reviewed_csv",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    metavar="FILE",
    help="Deprecated: use `impacts tile add-reviewed FILE`.",
)
@click.pass_context
def tile(
    ctx: click.Context,
    scenes_dir: Path | None,
    scene_list: Path | None,
    out_dir: Path | None,
    seed: int | None,
    config_path: Path | None,
    sets: tuple[str, ...],
    test_scenes: str | None,
    workers: int | None,
    array_index: int | None,
    array_size: int | None,
    chunk_size: int | None,
    merge_only: bool,
    reviewed_csv: Path | None,
) -> None:
    """Cut scenes into balanced 128x128 patches: TFRecord shards plus manifest.csv.

    `impacts tile --scenes DIR --out PATCHES` tiles every scene of DIR (or of --scene-list
    FILE); with --array-index I only the I-th scene, or the I-th chunk with --array-size N
    or --chunk-size K (`impacts tile merge` then joins the parts). Finished scenes are
    skipped; a failed one leaves parts/NAME.failed.json for `impacts jobs summary`. Exits
    non-zero when a scene failed; the other scenes are tiled and merged all the same.
    """
    given = given_options(ctx)
    if ctx.invoked_subcommand is not None:
        if given:
            names = ", ".join(option_name(p) for p in given)
            raise click.UsageError(
                f"`impacts tile {ctx.invoked_subcommand}` takes its options after its name, not {names} before it"
            )
        return
    if scenes_dir is not None and scene_list is not None:
        raise click.UsageError("pass --scenes DIR or --scene-list FILE, not both")
    if (scenes_dir is None and scene_list is None) or out_dir is None:  # not before a subcommand
        missing = "out_dir" if out_dir is None else "scenes_dir"
        raise click.MissingParameter(ctx=ctx, param=next(p for p in ctx.command.params if p.name == missing))
    # The first of DEPRECATED_FLAGS given decides; the other one would clash with it.
    deprecated = [p for name in DEPRECATED_FLAGS for p in given if p.name == name]
    if deprecated:
        _deprecated(ctx, deprecated[0], given)
    if reviewed_csv is not None:
        assert scenes_dir is not None  # the deprecated flags refuse --scene-list above
        _add_reviewed(reviewed_csv, scenes_dir, out_dir)
        return
    cfg = _tile_config(config_path, sets, seed, workers, test_scenes)
    if merge_only:
        _merge(scenes_dir, out_dir)
        return
    chunking = array_chunking(array_index, array_size, chunk_size)
    _tile_scenes(scenes_dir, scene_list, out_dir, cfg, array_index, chunking)


@tile.command("merge", short_help="Join the scenes tiled one by one (--array-index) into manifest.csv.")
@scenes_option(SCENES_HELP + "  [or --scene-list]", required=False)
@scene_list_option("Merge")
@out_option(PATCHES_HELP)
def tile_merge(scenes_dir: Path | None, scene_list: Path | None, out_dir: Path) -> None:
    """Merge the scenes already tiled (`impacts tile --array-index N`) into PATCHES/manifest.csv."""
    if (scenes_dir is None) == (scene_list is None):
        raise click.UsageError("pass --scenes DIR or --scene-list FILE (one of them)")
    _merge(scenes_dir, out_dir, scene_list)


@tile.command(
    "add-reviewed", short_help="Add rejected detections (hard_negatives.csv) as reviewed train patches."
)
@click.argument("csv_path", metavar="FILE", type=click.Path(path_type=Path, dir_okay=False))
@scenes_option("Folder of the scenes (NAME.tif) the rows of FILE name.")
@out_option("The patch set (written by `impacts tile`) to add to.")
def tile_add_reviewed(csv_path: Path, scenes_dir: Path, out_dir: Path) -> None:
    """Add the analysts' rejected detections to the patch set as `reviewed` train patches.

    FILE is the hard_negatives.csv of `impacts review export`; a detection already in the
    patch set is not added twice.
    """
    _add_reviewed(csv_path, scenes_dir, out_dir)


def _deprecated(ctx: click.Context, flag: click.Parameter, given: list[click.Parameter]) -> None:
    """Refuse options that a deprecated flag never took, else say which command replaces it."""
    old, command, allowed = DEPRECATED_FLAGS[str(flag.name)]
    new = f"`impacts tile {command} --scenes DIR --out DIR`"
    clashes = [option_name(p) for p in given if p is not flag and p.name not in allowed]
    if clashes:
        takes = [option_name(p) for p in ctx.command.params if p.name in allowed]
        raise click.UsageError(
            f"{option_name(flag)} takes only {_and(takes)}, not {', '.join(clashes)} "
            f"(and is deprecated: use {new})"
        )
    click.echo(f"Warning: `impacts tile {old}` is deprecated; use {new}.", err=True)


def _and(names: list[str]) -> str:
    return " and ".join(names) if len(names) < 3 else f"{', '.join(names[:-1])} and {names[-1]}"


def _tile_config(
    config_path: Path | None,
    sets: tuple[str, ...],
    seed: int | None,
    workers: int | None,
    test_scenes: str | None,
) -> TileConfig:
    """The resolved tiling config: the YAML file, then ``--set``, then the other options."""
    from impacts.config import load_config
    from tiling.config import TileConfig

    names = [n.strip() for n in test_scenes.split(",") if n.strip()] if test_scenes else None
    overrides = option_overrides(
        {"seed": seed, "workers": workers, "split.test_scenes": f"[{', '.join(names)}]" if names else None},
        sets,
    )
    return load_config(config_path, TileConfig, overrides)


def _tile_scenes(
    scenes_dir: Path | None,
    scene_list: Path | None,
    out_dir: Path,
    cfg: TileConfig,
    array_index: int | None,
    chunking: Chunking,
) -> None:
    """``impacts tile``: tile the folder or list (or an array element's chunk of it) and print
    one line per scene."""
    from impacts.errors import ImpactsError
    from tiling.patchset import PatchSetLayout
    from tiling.pipeline import tile_folder

    outcomes = tile_folder(scenes_dir, out_dir, cfg, array_index, scene_list=scene_list, chunking=chunking)
    click.echo(f"{'scene':32} {'split':5} {'status':8} {'impacts':>7} {'pos':>5} {'neg':>5} {'pool':>5}")
    for o in outcomes:
        c = o.counts
        click.echo(
            f"{o.scene:32} {o.split:5} {o.status:8} {c.get('impacts', 0):7d} {c.get('positive', 0):5d} {c.get('negative', 0):5d} {c.get('pool', 0):5d}"
        )
    problems = [o for o in outcomes if o.status in ("failed", "skipped")]
    for o in problems:
        click.echo(f"{o.status}: {o.message}", err=True)
    if array_index is None:
        click.echo(f"patch set: {PatchSetLayout(out_dir).manifest}")
    failed = [o.scene for o in outcomes if o.status == "failed"]
    if failed:
        raise ImpactsError(
            f"{len(failed)} of {len(outcomes)} scenes failed ({', '.join(failed)}); fix them as said above and run the same command again (finished scenes are kept)"
        )
    if outcomes and not any(o.status in ("done", "resumed") for o in outcomes):
        raise ImpactsError(f"no scene of {scene_list or scenes_dir} could be tiled; see the messages above")


def _merge(scenes_dir: Path | None, out_dir: Path, scene_list: Path | None = None) -> None:
    """``impacts tile merge``: join the per-scene parts (of a folder's or a list's scenes)
    into one manifest.csv."""
    from impacts.chunks import read_scene_list
    from tiling.io import find_scenes
    from tiling.pipeline import merge_parts

    if scene_list is not None:
        names = [s.name for s in read_scene_list(scene_list)]
    else:
        assert scenes_dir is not None
        names = [s.name for s in find_scenes(scenes_dir)]
    count = merge_parts(out_dir, names)
    click.echo(f"merged {count} patches into {out_dir / 'manifest.csv'}")


def _add_reviewed(csv_path: Path, scenes_dir: Path, out_dir: Path) -> None:
    """``impacts tile add-reviewed``: append the hard-negative list and print what happened."""
    from tiling.reviewed import append_reviewed

    summary = append_reviewed(csv_path, scenes_dir, out_dir)
    for row in summary.skipped:
        click.echo(f"skipped {row['detection_id']}: {row['why']}", err=True)
    if summary.new_scenes:
        click.echo(f"new scenes (not in the manifest, taken as train): {', '.join(summary.new_scenes)}")
    click.echo(
        f"reviewed patches added={summary.added} skipped_val_test={summary.skipped_val_test} "
        f"skipped_existing={summary.skipped_existing} missing_scene={summary.missing_scene}"
        + (f" restored={summary.restored}" if summary.restored else "")
    )
    click.echo(f"patch set: {out_dir / 'manifest.csv'}")
