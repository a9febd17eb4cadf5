"""The ``impacts catalog`` command (no TensorFlow: it only reads what ``impacts predict`` wrote)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("pred_dirs", nargs=-1, required=True, type=click.Path(path_type=Path, file_okay=False))
@click.option(
    "--out",
    "out_path",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="Catalog file: FILE.gpkg (GeoPackage) or FILE.parquet (GeoParquet, needs pyarrow).",
)
def catalog(pred_dirs: tuple[Path, ...], out_path: Path) -> None:
    """Merge the detections of prediction folders (PRED_DIR: `impacts predict --out`) into one
    lon/lat catalog: a row per detection, its box as a polygon on Mars (IAU_2015:49900).

    A folder or file that cannot be used is named on one line and the others go on; the
    command then exits non-zero.
    """
    from impacts.errors import ImpactsError
    from training.catalog import build_catalog

    result = build_catalog(pred_dirs, out_path)
    for line in result.problems:
        click.echo(" ".join(line.split()), err=True)
    click.echo(f"{result.detections} detections from {result.files} files -> {result.path}")
    if result.problems:
        raise ImpactsError(
            f"{len(result.problems)} folders or files could not be used (named above); fix or "
            "predict them again and run the same command (the catalog holds the others)"
        )
