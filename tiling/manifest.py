"""The patch-set manifest: one row per patch, the single source of truth of what was
trained on (see DESIGN.md, data contracts)."""

from __future__ import annotations

import csv
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Literal

from impacts.atomic import atomic_path
from impacts.errors import PatchSetError

Kind = Literal["positive", "negative", "pool", "mined", "reviewed"]
KINDS: tuple[Kind, ...] = ("positive", "negative", "pool", "mined", "reviewed")
MANIFEST_NAME = "manifest.csv"


@dataclass
class PatchRecord:
    """One patch: where it comes from, what it is, and where its bytes are.

    ``row``/``col`` are the top-left scene pixel of the window; ``shard`` is relative to
    the patch-set folder and ``offset`` the record's byte offset in it. ``round``,
    ``score`` and ``model_version`` are filled for mined patches.
    """

    patch_id: str
    scene: str
    row: int
    col: int
    height: int
    width: int
    split: str
    kind: str
    impact_fraction: float
    nodata_fraction: float
    shard: str
    offset: int
    round: int = -1
    score: float = float("nan")
    model_version: str = ""


COLUMNS = [f.name for f in fields(PatchRecord)]
_TYPES = {f.name: f.type for f in fields(PatchRecord)}


def _format(record: PatchRecord) -> list[str]:
    row = []
    for name in COLUMNS:
        value = getattr(record, name)
        if isinstance(value, float):
            row.append("" if value != value else f"{value:.6g}")
        else:
            row.append(str(value))
    return row


def write_manifest(path: Path, records: list[PatchRecord]) -> None:
    """Write the manifest atomically (:func:`impacts.atomic.atomic_path`)."""
    with atomic_path(path) as tmp, tmp.open("w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows(_format(r) for r in records)


def _parse(name: str, text: str) -> object:
    kind = _TYPES[name]
    if kind == "int":
        return int(text)
    if kind == "float":
        return float(text) if text else float("nan")
    return text


def read_manifest(path: Path) -> list[PatchRecord]:
    """Read a manifest.

    Raises:
        PatchSetError: The file is missing or its columns are not the manifest's.
    """
    if not path.is_file():
        raise PatchSetError(
            f"{path} not found; build the patch set with `impacts tile --scenes DIR --out {path.parent}`"
        )
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, [])
        missing = [c for c in COLUMNS[:12] if c not in header]
        if missing:
            raise PatchSetError(f"{path}: missing manifest columns {missing}; rebuild it with `impacts tile`")
        index = {name: header.index(name) for name in COLUMNS if name in header}
        return [
            PatchRecord(**{name: _parse(name, row[i]) for name, i in index.items()})  # type: ignore[arg-type]
            for row in reader
        ]
