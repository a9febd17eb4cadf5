"""``impacts synth`` and ``impacts tile``: parse, load config, call library code.

Only click is imported at module level; numpy, rasterio and the library modules are
imported inside the commands so ``impacts --help`` stays fast. TensorFlow is never imported.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import click

log = logging.getLogger(__name__)

SIZE_PATTERN = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")


def _size(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    match = SIZE_PATTERN.match(value)
    if not match:
        raise click.BadParameter(f"{value!r} is not HEIGHTxWIDTH, e.g. 3000x2000")
    return int(match.group(1)), int(match.group(2))


def _overrides(pairs: dict[str, object], sets: tuple[str, ...]) -> list[str]:
    """Command-line options become ``key=value`` overrides applied after ``--set``."""
    extra = [f"{k}={v}" for k, v in pairs.items() if v is not None]
    return [*sets, *extra]


@click.command()
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="Output folder for the scenes.",
)
@click.option("--count", type=int, default=None, help="Number of scenes [config: 4].")
@click.option(
    "--size",
    callback=_size,
    default=None,
    help="Fixed scene size HEIGHTxWIDTH in px (e.g. 40000x12000) [config: drawn per scene].",
)
@click.option("--seed", type=int, default=None, help="Seed; the same seed writes the same bytes [config: 0].")
@click.option(
    "--difficulty",
    type=click.Choice(["easy", "medium", "hard"]),
    default=None,
    help="Look-alike density and impact contrast [config: medium].",
)
@click.option(
    "--without-mask",
    type=int,
    default=None,
    help="Write the last N scenes without a mask (to exercise that path).",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="YAML config (see configs/synth.yaml).",
)
@click.option("--set", "sets", multiple=True, help="Config override KEY=VALUE (repeatable).")
def synth(
    out_dir: Path,
    count: int | None,
    size: tuple[int, int] | None,
    seed: int | None,
    difficulty: str | None,
    without_mask: int | None,
    config_path: Path | None,
    sets: tuple[str, ...],
) -> None:
    """Write CTX-like synthetic Mars scenes: NAME.tif, NAME_mask.tif, NAME_objects.csv, data.csv."""
    from tqdm import tqdm

    from impacts.config import load_config
    from impacts.provenance import write_run_record
    from tiling.config import SynthConfig
    from tiling.synth import synth_scenes

    size_text = f"[{size[0]}, {size[1]}]" if size else None
    overrides = _overrides(
        {
            "count": count,
            "size": size_text,
            "seed": seed,
            "difficulty": difficulty,
            "without_mask": without_mask,
        },
        sets,
    )
    cfg = load_config(config_path, SynthConfig, overrides)
    with tqdm(total=cfg.count, desc="writing scenes", unit="scene", disable=None) as bar:
        summaries = synth_scenes(out_dir, cfg, progress=bar.update)
    write_run_record(out_dir, cfg, cfg.seed, "synth")
    for s in summaries:
        click.echo(
            f"{s.file_name}  {s.height}x{s.width}  impacts={s.counts['impact']}  craters={s.counts['crater']}  "
            f"impact_px={100 * s.impact_fraction:.2f}%{'' if s.has_mask else '  (no mask)'}"
        )
    click.echo(f"wrote {len(summaries)} scenes to {out_dir}")


@click.command()
@click.option(
    "--scenes",
    "scenes_dir",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="Folder of NAME.tif + NAME_mask.tif scenes.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="Patch-set folder (shards + manifest.csv).",
)
@click.option("--seed", type=int, default=None, help="Seed of splits, crops and sampling [config: 0].")
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="YAML config (see configs/tile.yaml).",
)
@click.option(
    "--set",
    "sets",
    multiple=True,
    help="Config override KEY=VALUE (repeatable), e.g. --set positives_per_impact=2.",
)
@click.option(
    "--test-scenes", default=None, help="Comma-separated scene names (no .tif) to put in the test split."
)
@click.option("--workers", type=int, default=None, help="Scene processes [config: one per core].")
@click.option(
    "--array-index",
    type=int,
    default=None,
    help="Tile only the N-th scene (1-based, e.g. $LSB_JOBINDEX) and skip the merge.",
)
@click.option("--merge-only", is_flag=True, help="Only merge the scenes already tiled into manifest.csv.")
@click.option(
    "--reviewed",
    "reviewed_csv",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Only append the rows of this hard_negatives.csv (`impacts review export`) to the existing "
    "patch set --out as `reviewed` train patches.",
)
def tile(
    scenes_dir: Path,
    out_dir: Path,
    seed: int | None,
    config_path: Path | None,
    sets: tuple[str, ...],
    test_scenes: str | None,
    workers: int | None,
    array_index: int | None,
    merge_only: bool,
    reviewed_csv: Path | None,
) -> None:
    """Cut scenes into balanced 128x128 patches: TFRecord shards plus manifest.csv.

    Exits non-zero when a scene failed; the other scenes are tiled and merged all the same.
    With --reviewed FILE, only adds the analysts' rejected detections to the patch set.
    """
    if reviewed_csv is not None:
        given = {
            "--seed": seed,
            "--config": config_path,
            "--set": sets or None,
            "--test-scenes": test_scenes,
            "--workers": workers,
            "--array-index": array_index,
            "--merge-only": merge_only or None,
        }
        clashes = [name for name, value in given.items() if value is not None]
        if clashes:
            raise click.UsageError(f"--reviewed takes only --scenes and --out, not {', '.join(clashes)}")
        _tile_reviewed(reviewed_csv, scenes_dir, out_dir)
        return
    from impacts.config import load_config
    from impacts.errors import ImpactsError
    from tiling.config import TileConfig
    from tiling.io import find_scenes
    from tiling.pipeline import merge_parts, tile_folder

    names = [n.strip() for n in test_scenes.split(",") if n.strip()] if test_scenes else None
    overrides = _overrides(
        {"seed": seed, "workers": workers, "split.test_scenes": f"[{', '.join(names)}]" if names else None},
        sets,
    )
    cfg = load_config(config_path, TileConfig, overrides)
    if merge_only:
        count = merge_parts(out_dir, [s.name for s in find_scenes(scenes_dir)])
        click.echo(f"merged {count} patches into {out_dir / 'manifest.csv'}")
        return
    outcomes = tile_folder(scenes_dir, out_dir, cfg, array_index)
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
        click.echo(f"patch set: {out_dir / 'manifest.csv'}")
    failed = [o.scene for o in outcomes if o.status == "failed"]
    if failed:
        raise ImpactsError(
            f"{len(failed)} of {len(outcomes)} scenes failed ({', '.join(failed)}); fix them as said above and run the same command again (finished scenes are kept)"
        )
    if not any(o.status in ("done", "resumed") for o in outcomes):
        raise ImpactsError(f"no scene of {scenes_dir} could be tiled; see the messages above")


def _tile_reviewed(csv_path: Path, scenes_dir: Path, out_dir: Path) -> None:
    """``impacts tile --reviewed``: append the hard-negative list and print what happened."""
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
