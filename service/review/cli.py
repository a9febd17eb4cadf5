"""``impacts review``: import detections, manage analysts, export decisions.

The database comes from ``--db``, else ``IMPACTS_REVIEW_DB_URL``, else ``sqlite:///review.db``
(:data:`impacts.options.db_option`). SQLAlchemy and the image code are imported inside the
commands, so ``impacts --help`` stays fast.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from impacts.options import db_option, out_option, scenes_option


def _geojson_files(paths: tuple[Path, ...]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(path.glob("*_detections.geojson"))
            if not found:
                raise click.BadParameter(f"{path} holds no *_detections.geojson", param_hint="FILE")
            files.extend(found)
        else:
            files.append(path)
    return files


@click.group()
def review() -> None:
    """Review detections: import them into the queue, add analysts and API tokens, export the decisions."""


@review.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@scenes_option("Folder of the scenes (NAME.tif) the detections were predicted on.", exists=True)
@click.option("--crop-px", type=click.IntRange(16, 1024), default=128, show_default=True, help="Crop side.")
@click.option(
    "--context-px", type=click.IntRange(16, 8192), default=512, show_default=True, help="Context view side."
)
@db_option
def import_(files: tuple[Path, ...], scenes_dir: Path, crop_px: int, context_px: int, db_url: str) -> None:
    """Add the detections of `impacts predict` GeoJSON FILEs (or folders of them) to the queue.

    Importing the same file again adds nothing. Exits non-zero when a detection had to be
    skipped (the others are imported).
    """
    from impacts.errors import DetectionImportError
    from service.review.importer import import_detections
    from service.review.store import ReviewStore

    skipped = 0
    store = ReviewStore.open(db_url)
    try:
        for path in _geojson_files(files):
            s = import_detections(store, path, scenes_dir, crop_px=crop_px, context_px=context_px)
            click.echo(
                f"{path}: {s.added} new detections, {s.existing} already queued, {s.clipped} shown "
                f"clipped, {s.skipped} skipped ({s.scenes} scenes)"
            )
            skipped += s.skipped
    finally:
        store.close()
    if skipped:
        raise DetectionImportError(
            f"{skipped} detections could not be given their views and were skipped (see the log above); "
            "fix their scenes and import again (the others are queued and are not added twice)"
        )


@review.command("export")
@out_option("Folder for accepted.geojson, accepted.csv and hard_negatives.csv.")
@db_option
def export(out_dir: Path, db_url: str) -> None:
    """Write accepted impacts (GeoJSON in the scene CRS, CSV) and rejected ones as hard negatives."""
    from service.review.export import export_reviews
    from service.review.store import ReviewStore

    store = ReviewStore.open(db_url)
    try:
        s = export_reviews(store, out_dir)
    finally:
        store.close()
    for path in s.files:
        click.echo(f"wrote {path}")
    click.echo(f"accepted {s.accepted}, rejected (hard negatives) {s.rejected}")
    click.echo(
        f"left out: {s.conflict} in conflict (analysts disagree), {s.unsure} unsure, {s.pending} pending"
    )


@review.group()
def users() -> None:
    """Manage analysts."""


@users.command("add")
@click.argument("name")
@click.option(
    "--password-stdin", is_flag=True, help="Read the password from the first line of standard input."
)
@db_option
def users_add(name: str, password_stdin: bool, db_url: str) -> None:
    """Add analyst NAME; the password is prompted for (twice) or read from stdin, never an argument."""
    from service.review.security import check_analyst_name, check_password
    from service.review.store import ReviewStore

    check_analyst_name(name)
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    check_password(password)  # before touching the database
    store = ReviewStore.open(db_url)
    try:
        store.add_analyst(name, password)
    finally:
        store.close()
    click.echo(f"added analyst {name}")


@users.command("list")
@db_option
def users_list(db_url: str) -> None:
    """List analysts."""
    from service.review.store import ReviewStore

    store = ReviewStore.open(db_url)
    try:
        for name in store.analysts():
            click.echo(name)
    finally:
        store.close()


@review.group()
def tokens() -> None:
    """Manage API tokens: credentials for scripts that queue detections (POST /v1/predict?review=true)."""


@tokens.command("add")
@click.argument("name")
@db_option
def tokens_add(name: str, db_url: str) -> None:
    """Make API token NAME and print it once (only a hash is stored: keep it safe)."""
    from service.review.store import ReviewStore

    store = ReviewStore.open(db_url)
    try:
        token = store.add_token(name)
    finally:
        store.close()
    click.echo(token)
    click.echo(
        f"API token {name!r} made; send it as 'Authorization: Bearer TOKEN'. It is shown only now.", err=True
    )


@tokens.command("list")
@db_option
def tokens_list(db_url: str) -> None:
    """List API tokens (name and creation time; the tokens themselves are never stored)."""
    from service.review.store import ReviewStore

    store = ReviewStore.open(db_url)
    try:
        for name, created_at in store.tokens():
            click.echo(f"{name}\t{created_at.isoformat(timespec='seconds')}")
    finally:
        store.close()


@tokens.command("revoke")
@click.argument("name")
@db_option
def tokens_revoke(name: str, db_url: str) -> None:
    """Revoke API token NAME: requests carrying it are refused from now on."""
    from service.review.store import ReviewStore

    store = ReviewStore.open(db_url)
    try:
        store.revoke_token(name)
    finally:
        store.close()
    click.echo(f"revoked API token {name}")
