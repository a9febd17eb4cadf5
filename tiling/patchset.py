"""The patch-set format, in one place: folder layout, manifest, kinds, splits, reading records.

A patch set is what ``impacts tile`` writes and ``impacts train`` reads (see DESIGN.md, data
contracts). Every other module builds its paths, reads its manifest and names its kinds
through this one; nothing here imports TensorFlow (``training.data`` turns the records
into ``tf.data`` input). Folder layout (:class:`PatchSetLayout`)::

    PATCHES/manifest.csv              one row per patch (COLUMNS): the single source of truth
    PATCHES/summary.json              the last `impacts tile` run, one outcome per scene
    PATCHES/run.json                  resolved config, git revision, seed (impacts.provenance)
    PATCHES/parts/NAME/               one complete scene (renamed from parts/.NAME.partial)
        NAME-<group>-00000.tfrecord   shards; group = the split, or "pool" for the mining pool
        manifest.csv                  the scene's rows (merged into PATCHES/manifest.csv)
        part.json                     scene, split, fingerprint, counts, height, width, dtype:
                                      present = the scene is complete (resume marker)
        objects.csv                   planted objects of a synthetic scene, when it has them
    PATCHES/parts/.NAME.partial/      a scene being tiled (never read)
    PATCHES/reviewed/reviewed-<hash>.tfrecord   reviewed hard negatives, one shard per run
    PATCHES/reviewed/manifest.csv     ledger of every reviewed row (restored after a re-tile)
    PATCHES/reviewed.json             one entry per `impacts tile --reviewed` run

A training run folder holds its own ``RUN/manifest.csv`` (the patch set's plus mined rows),
read with :meth:`PatchSet.load`. Each shard record is a ``tf.train.Example`` with
``patch_id, image, mask, height, width, dtype`` (:func:`tiling.shards.encode_patch`); a
record's ``shard`` is relative to the patch-set folder and ``offset`` is its byte offset.

Kinds (:data:`KINDS`): ``positive`` (a crop holding impact pixels), ``negative`` (a sampled
non-impact patch), ``pool`` (:data:`MINING_POOL`, the unused train negatives), ``mined``
(:data:`MINED`, pool patches a mining round picked) and ``reviewed`` (:data:`REVIEWED`,
analysts' rejected detections). Their named groups say who uses which.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Literal

from impacts.atomic import atomic_path
from impacts.errors import PatchSetError
from tiling.tfrecord import decode_example, read_record_at

# --- kinds and splits -------------------------------------------------------------------

Kind = Literal["positive", "negative", "pool", "mined", "reviewed"]
KINDS: tuple[Kind, ...] = ("positive", "negative", "pool", "mined", "reviewed")

#: Unused train negatives: the candidates of hard-negative mining (train split only).
MINING_POOL: Kind = "pool"
#: Pool patches a mining round picked; they join the training negatives.
MINED: Kind = "mined"
#: Detections analysts rejected, added by ``impacts tile --reviewed`` (train split only).
REVIEWED: Kind = "reviewed"

#: What ``impacts tile`` cuts from a scene (the counts of ``part.json``).
TILED_KINDS: tuple[Kind, ...] = ("positive", "negative", MINING_POOL)
#: Impact patches a training round fits on.
POSITIVE_KINDS: tuple[Kind, ...] = ("positive",)
#: Non-impact patches a training round fits on.
NEGATIVE_KINDS: tuple[Kind, ...] = ("negative", MINED, REVIEWED)
#: Everything a training round fits on (never the pool).
TRAIN_KINDS: tuple[Kind, ...] = POSITIVE_KINDS + NEGATIVE_KINDS
#: The training set mined patches are counted against (``mining.max_share``).
MINING_BASE_KINDS: tuple[Kind, ...] = tuple(k for k in TRAIN_KINDS if k != MINED)
#: What evaluation measures on a split: every patch but the pool and mined ones.
EVAL_KINDS: tuple[Kind, ...] = ("positive", "negative", REVIEWED)

Split = Literal["train", "val", "test"]
SPLITS: tuple[Split, ...] = ("train", "val", "test")
#: The only split that is trained on, mined and extended with reviewed patches.
TRAIN_SPLIT: Split = "train"
#: Splits that measure models; nothing is ever added to their scenes.
EVAL_SPLITS: tuple[Split, ...] = ("val", "test")

# --- folder layout ----------------------------------------------------------------------

MANIFEST_NAME = "manifest.csv"
TILE_SUMMARY_NAME = "summary.json"
PARTS_DIR = "parts"
PART_META = "part.json"
OBJECTS_NAME = "objects.csv"
REVIEWED_DIR = "reviewed"
REVIEWED_SUMMARY_NAME = "reviewed.json"
SHARD_SUFFIX = ".tfrecord"


def relative_part(scene: str) -> Path:
    """A scene's part folder relative to the patch set, as records name their shards.

    Args:
        scene: Scene name.

    Returns:
        ``parts/NAME``.
    """
    return Path(PARTS_DIR) / scene


def shard_group(split: str, kind: str) -> str:
    """The shard group a patch is written to: its split, or ``pool`` for the mining pool,
    so that mining reads only the pool's shards.

    Args:
        split: The patch's split.
        kind: The patch's kind.

    Returns:
        The group (part of the shard's file name).
    """
    return MINING_POOL if kind == MINING_POOL else split


def shard_file_name(scene: str, group: str, index: int) -> str:
    """File name of a scene's ``index``-th shard of a group: ``NAME-<group>-00000.tfrecord``.

    Args:
        scene: Scene name.
        group: From :func:`shard_group`.
        index: 0-based shard number within the group.

    Returns:
        The file name (inside the scene's part folder).
    """
    return f"{scene}-{group}-{index:05d}{SHARD_SUFFIX}"


def tiled_patch_id(scene: str, index: int) -> str:
    """Patch id of the ``index``-th patch cut from a scene: ``NAME-000000``.

    Args:
        scene: Scene name.
        index: 0-based patch number within the scene.

    Returns:
        The patch id.
    """
    return f"{scene}-{index:06d}"


def reviewed_shard(patch_ids: Sequence[str]) -> str:
    """The shard of one ``impacts tile --reviewed`` run, named by a hash of its patch ids so a
    run's shard never overwrites another's.

    Args:
        patch_ids: The run's patch ids, in the order they are written.

    Returns:
        ``reviewed/reviewed-<16 hex>.tfrecord``, relative to the patch set.
    """
    digest = hashlib.sha256("\n".join(patch_ids).encode()).hexdigest()[:16]
    return f"{REVIEWED_DIR}/{REVIEWED}-{digest}{SHARD_SUFFIX}"


@dataclass(frozen=True)
class PatchSetLayout:
    """Where each file of a patch-set folder ``root`` lies (see the module docstring)."""

    root: Path

    @property
    def manifest(self) -> Path:
        """``manifest.csv``: every patch (a run folder has one of its own)."""
        return self.root / MANIFEST_NAME

    @property
    def tile_summary(self) -> Path:
        """``summary.json``: how each scene of the last ``impacts tile`` run went."""
        return self.root / TILE_SUMMARY_NAME

    @property
    def parts(self) -> Path:
        """``parts/``: one folder per tiled scene."""
        return self.root / PARTS_DIR

    def part(self, scene: str) -> Path:
        """``parts/NAME``: a complete scene's shards, manifest, ``part.json``, objects."""
        return self.root / relative_part(scene)

    def partial_part(self, scene: str) -> Path:
        """``parts/.NAME.partial``: the scene while it is tiled, renamed to :meth:`part` when done."""
        return self.parts / f".{scene}.partial"

    def part_manifest(self, scene: str) -> Path:
        """``parts/NAME/manifest.csv``: the scene's rows."""
        return self.part(scene) / MANIFEST_NAME

    def part_meta(self, scene: str) -> Path:
        """``parts/NAME/part.json``: the scene's completion marker."""
        return self.part(scene) / PART_META

    def objects(self, scene: str) -> Path:
        """``parts/NAME/objects.csv``: the scene's planted-object list (may not exist)."""
        return self.part(scene) / OBJECTS_NAME

    @property
    def reviewed_dir(self) -> Path:
        """``reviewed/``: shards and ledger of reviewed hard negatives."""
        return self.root / REVIEWED_DIR

    @property
    def reviewed_ledger(self) -> Path:
        """``reviewed/manifest.csv``: every reviewed row ever added."""
        return self.reviewed_dir / MANIFEST_NAME

    @property
    def reviewed_summary(self) -> Path:
        """``reviewed.json``: one entry per ``impacts tile --reviewed`` run."""
        return self.root / REVIEWED_SUMMARY_NAME

    def shard(self, relative: str) -> Path:
        """A shard named by a record (relative to the patch set) as a path."""
        return self.root / relative


# --- the manifest -----------------------------------------------------------------------


@dataclass
class PatchRecord:
    """One patch: where it comes from, what it is, and where its bytes are.

    ``row``/``col`` are the top-left scene pixel of the window; ``split`` is one of
    :data:`SPLITS` and ``kind`` one of :data:`KINDS`; ``shard`` is relative to the patch-set
    folder and ``offset`` the record's byte offset in it. ``round``, ``score`` and
    ``model_version`` are filled for mined patches (``score`` and ``model_version`` also for
    reviewed ones).
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


#: The manifest's columns, in file order (the fields of :class:`PatchRecord`).
COLUMNS = [f.name for f in fields(PatchRecord)]
#: Columns every manifest must have; the others (round, score, model version) take defaults.
REQUIRED_COLUMNS = COLUMNS[:12]
#: The header line this version writes; part manifests must match it to be merged.
MANIFEST_HEADER = ",".join(COLUMNS) + "\n"
_TYPES = {f.name: f.type for f in fields(PatchRecord)}


def _format(record: PatchRecord) -> list[str]:
    row = []
    for name in COLUMNS:
        value = getattr(record, name)
        if isinstance(value, float):
            row.append("" if value != value else f"{value:.6g}")  # NaN is an empty cell
        else:
            row.append(str(value))
    return row


def write_manifest(path: Path, records: Iterable[PatchRecord]) -> None:
    """Write a manifest atomically (:func:`impacts.atomic.atomic_path`).

    Args:
        path: The file to replace.
        records: Its rows, in order; floats get 6 significant digits, NaN an empty cell.
    """
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

    Args:
        path: ``manifest.csv`` of a patch set, a part, the reviewed ledger or a run folder.

    Returns:
        Its records in file order (columns this version does not know are ignored).

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
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise PatchSetError(f"{path}: missing manifest columns {missing}; rebuild it with `impacts tile`")
        index = {name: header.index(name) for name in COLUMNS if name in header}
        return [
            PatchRecord(**{name: _parse(name, row[i]) for name, i in index.items()})  # type: ignore[arg-type]
            for row in reader
        ]


def concat_manifests(dest: Path, sources: Iterable[Path]) -> int:
    """Write the rows of several manifests, in order, into one (atomically), line by line.

    Args:
        dest: The merged manifest to replace.
        sources: Manifests written by this version (same header).

    Returns:
        The number of rows written.

    Raises:
        PatchSetError: A source's header is not this version's (``dest`` is left as it was).
    """
    count = 0
    with atomic_path(dest) as partial, partial.open("w", newline="") as merged:
        merged.write(MANIFEST_HEADER)
        for path in sources:
            with path.open(newline="") as part:
                if part.readline() != MANIFEST_HEADER:
                    raise PatchSetError(
                        f"{path}: columns differ from this version's manifest; delete {path.parent} and tile again"
                    )
                for line in part:
                    merged.write(line)
                    count += 1
    return count


# --- reading and filtering records ------------------------------------------------------


def select(records: Iterable[PatchRecord], split: str, kinds: Sequence[str]) -> list[PatchRecord]:
    """Records of one split whose kind is in ``kinds`` (one of the groups above), in order.

    Args:
        records: Manifest records.
        split: One of :data:`SPLITS`.
        kinds: The kinds to keep.

    Returns:
        The matching records (the same objects, not copies).
    """
    return [r for r in records if r.split == split and r.kind in kinds]


def first_per_shard(records: Iterable[PatchRecord]) -> list[PatchRecord]:
    """The first record of each shard, in order of first appearance.

    Args:
        records: Manifest records.

    Returns:
        One record per distinct ``shard``.
    """
    seen: dict[str, PatchRecord] = {}
    for r in records:
        seen.setdefault(r.shard, r)
    return list(seen.values())


def record_dtype(root: Path, record: PatchRecord) -> str:
    """Pixel type of a patch, read from its shard record (``uint8`` when it names none).

    Args:
        root: The patch-set folder.
        record: A record of that patch set.

    Returns:
        ``"uint8"`` or ``"uint16"`` (whatever the record says).

    Raises:
        PatchSetError: The shard is corrupt or holds no record at the offset.
    """
    example = decode_example(read_record_at(PatchSetLayout(root).shard(record.shard), record.offset))
    dtype = example.get("dtype", b"uint8")
    return dtype.decode() if isinstance(dtype, bytes) else "uint8"


@dataclass
class PatchSet:
    """A patch-set folder and its manifest (which a training run may extend with mined rows)."""

    root: Path
    records: list[PatchRecord]
    dtype: str

    @classmethod
    def load(cls, root: Path, manifest: Path | None = None) -> PatchSet:
        """Read ``root/manifest.csv`` (or ``manifest``) and the pixel type of its patches.

        Args:
            root: The patch-set folder (shards are relative to it).
            manifest: Another manifest of the same shards (a run folder's, with mined rows).

        Returns:
            The patch set.

        Raises:
            PatchSetError: No manifest, no patch, or patches of several pixel types.
        """
        records = read_manifest(manifest or PatchSetLayout(root).manifest)
        if not records:
            raise PatchSetError(f"{root}: the manifest lists no patch; tile some scenes first")
        scenes_by_dtype: dict[str, set[str]] = {}
        for r in first_per_shard(records):
            scenes_by_dtype.setdefault(record_dtype(root, r), set()).add(r.scene)
        if len(scenes_by_dtype) != 1:
            # Name the scenes of the rarer types: those are usually the ones to move.
            common = max(scenes_by_dtype, key=lambda d: len(scenes_by_dtype[d]))
            others = "; ".join(
                f"{dtype}: {', '.join(sorted(names)[:5])}{' ...' if len(names) > 5 else ''}"
                for dtype, names in sorted(scenes_by_dtype.items())
                if dtype != common
            )
            raise PatchSetError(
                f"{root}: patches of several pixel types ({common} and {others}; float, signed and "
                "negatively scaled products are read as uint16); tile scenes of one pixel type into one "
                "patch set, the others into another (`impacts tile --out OTHER`)"
            )
        return cls(root, records, next(iter(scenes_by_dtype)))

    @property
    def layout(self) -> PatchSetLayout:
        """Paths of this patch set's files."""
        return PatchSetLayout(self.root)

    def select(self, split: str, kinds: Sequence[str]) -> list[PatchRecord]:
        """Records of one split whose kind is in ``kinds`` (see :func:`select`)."""
        return select(self.records, split, kinds)

    def objects_csv(self, scene: str) -> Path:
        """Where the scene's planted-object list sits in the patch set (may not exist)."""
        return self.layout.objects(scene)
