"""The patch-set format's one owner: layout paths, kinds and their groups, the manifest's
round trip, and reading and filtering records without TensorFlow."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, get_args

import numpy as np
import pytest

from impacts.errors import PatchSetError
from tiling.patchset import (
    COLUMNS,
    EVAL_KINDS,
    EVAL_SPLITS,
    KINDS,
    MANIFEST_HEADER,
    MINED,
    MINING_BASE_KINDS,
    MINING_POOL,
    NEGATIVE_KINDS,
    POSITIVE_KINDS,
    REQUIRED_COLUMNS,
    REVIEWED,
    SPLITS,
    TILED_KINDS,
    TRAIN_KINDS,
    TRAIN_SPLIT,
    Kind,
    PatchRecord,
    PatchSet,
    PatchSetLayout,
    Split,
    concat_manifests,
    first_per_shard,
    read_manifest,
    record_dtype,
    relative_part,
    reviewed_shard,
    select,
    shard_file_name,
    shard_group,
    tiled_patch_id,
    write_manifest,
)
from tiling.shards import encode_patch
from tiling.tfrecord import TFRecordWriter


def _record(patch_id: str, split: str = "train", kind: str = "negative", **extra: Any) -> PatchRecord:
    record = PatchRecord(
        patch_id=patch_id,
        scene="S1",
        row=10,
        col=20,
        height=8,
        width=8,
        split=split,
        kind=kind,
        impact_fraction=0.0,
        nodata_fraction=0.125,
        shard="parts/S1/S1-train-00000.tfrecord",
        offset=0,
    )
    return replace(record, **extra)


def _same(a: PatchRecord, b: PatchRecord) -> bool:
    """Field-wise equality where NaN equals NaN (an unset score)."""

    def nan_free(r: PatchRecord) -> dict[str, Any]:
        return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in asdict(r).items()}

    return nan_free(a) == nan_free(b)


# --- layout -----------------------------------------------------------------------------


def test_layout_names_every_file_of_the_folder(tmp_path: Path) -> None:
    layout = PatchSetLayout(tmp_path)
    assert layout.manifest == tmp_path / "manifest.csv"
    assert layout.tile_summary == tmp_path / "summary.json"
    assert layout.parts == tmp_path / "parts"
    assert layout.part("S1") == tmp_path / "parts" / "S1"
    assert layout.partial_part("S1") == tmp_path / "parts" / ".S1.partial"
    assert layout.part_manifest("S1") == tmp_path / "parts" / "S1" / "manifest.csv"
    assert layout.part_meta("S1") == tmp_path / "parts" / "S1" / "part.json"
    assert layout.objects("S1") == tmp_path / "parts" / "S1" / "objects.csv"
    assert layout.reviewed_dir == tmp_path / "reviewed"
    assert layout.reviewed_ledger == tmp_path / "reviewed" / "manifest.csv"
    assert layout.reviewed_summary == tmp_path / "reviewed.json"
    assert layout.shard("parts/S1/S1-val-00002.tfrecord") == tmp_path / "parts/S1/S1-val-00002.tfrecord"


def test_shard_names_put_the_pool_apart_and_records_name_shards_relative_to_the_set(tmp_path: Path) -> None:
    assert relative_part("S1") == Path("parts/S1")
    assert PatchSetLayout(tmp_path).part("S1") == tmp_path / relative_part("S1")
    assert shard_group("train", MINING_POOL) == "pool"
    assert [shard_group(split, "negative") for split in SPLITS] == ["train", "val", "test"]
    assert shard_group("val", "positive") == "val"
    assert shard_file_name("S1", "pool", 3) == "S1-pool-00003.tfrecord"
    assert tiled_patch_id("S1", 42) == "S1-000042"


def test_reviewed_shards_are_named_by_their_patch_ids() -> None:
    one = reviewed_shard(["reviewed-a", "reviewed-b"])
    assert re.fullmatch(r"reviewed/reviewed-[0-9a-f]{16}\.tfrecord", one)
    assert reviewed_shard(["reviewed-a", "reviewed-b"]) == one
    assert reviewed_shard(["reviewed-b", "reviewed-a"]) != one
    assert reviewed_shard(["reviewed-a"]) != one


# --- kinds and splits -------------------------------------------------------------------


def test_kinds_and_splits_are_the_literals_values() -> None:
    assert get_args(Kind) == KINDS and get_args(Split) == SPLITS
    assert (MINING_POOL, MINED, REVIEWED) == ("pool", "mined", "reviewed")
    assert TRAIN_SPLIT == "train" and EVAL_SPLITS == ("val", "test")
    assert {TRAIN_SPLIT, *EVAL_SPLITS} == set(SPLITS)


def test_kind_groups_say_who_uses_which() -> None:
    groups = (TILED_KINDS, POSITIVE_KINDS, NEGATIVE_KINDS, TRAIN_KINDS, MINING_BASE_KINDS, EVAL_KINDS)
    assert all(set(group) <= set(KINDS) for group in groups)
    assert TILED_KINDS == ("positive", "negative", "pool")
    assert POSITIVE_KINDS == ("positive",)
    assert NEGATIVE_KINDS == ("negative", "mined", "reviewed")
    assert not set(POSITIVE_KINDS) & set(NEGATIVE_KINDS)
    assert set(TRAIN_KINDS) == set(POSITIVE_KINDS) | set(NEGATIVE_KINDS) == set(KINDS) - {MINING_POOL}
    assert set(MINING_BASE_KINDS) == {"positive", "negative", "reviewed"} == set(TRAIN_KINDS) - {MINED}
    assert set(EVAL_KINDS) == {"positive", "negative", "reviewed"}
    assert MINING_POOL not in EVAL_KINDS and MINED not in EVAL_KINDS


# --- the manifest -----------------------------------------------------------------------


def test_manifest_round_trip_keeps_every_field(tmp_path: Path) -> None:
    records = [
        _record("S1-000000", kind="positive", impact_fraction=0.0625),
        _record("S1-000001", kind="mined", round=2, score=0.1234567, model_version="run-r1"),
        _record("reviewed-x", kind="reviewed", score=0.9, model_version="v3"),
        _record("S1-000002", split="test", nodata_fraction=1 / 3),
    ]
    path = tmp_path / "manifest.csv"
    write_manifest(path, records)
    text = path.read_text()
    assert MANIFEST_HEADER == ",".join(COLUMNS) + "\n"  # noqa: SIM300
    assert text.startswith(MANIFEST_HEADER)
    assert ",-1,,\n" in text, "an unset score is an empty cell"
    back = read_manifest(path)
    assert len(back) == len(records)
    expected = [replace(records[1], score=0.123457), replace(records[3], nodata_fraction=0.333333)]
    assert all(
        _same(a, b) for a, b in zip(back, [records[0], expected[0], records[2], expected[1]], strict=True)
    )
    assert math.isnan(back[0].score) and back[1].round == 2 and isinstance(back[1].offset, int)


def test_an_older_manifest_without_the_optional_columns_reads_with_defaults(tmp_path: Path) -> None:
    path = tmp_path / "manifest.csv"
    record = _record("S1-000000")
    values = [str(v) for v in asdict(record).values()][: len(REQUIRED_COLUMNS)]
    path.write_text(",".join([*REQUIRED_COLUMNS, "unknown"]) + "\n" + ",".join([*values, "x"]) + "\n")
    (back,) = read_manifest(path)
    assert _same(back, record)


def test_a_manifest_without_its_columns_or_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PatchSetError, match=r"not found; build the patch set with `impacts tile"):
        read_manifest(tmp_path / "manifest.csv")
    path = tmp_path / "manifest.csv"
    path.write_text("patch_id,scene\nS1-000000,S1\n")
    with pytest.raises(PatchSetError, match=r"missing manifest columns \['row', 'col'"):
        read_manifest(path)


def test_concat_manifests_joins_parts_in_order_and_refuses_other_columns(tmp_path: Path) -> None:
    first, second, merged = tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "manifest.csv"
    write_manifest(first, [_record("S1-000000"), _record("S1-000001")])
    write_manifest(second, [_record("S2-000000")])
    assert concat_manifests(merged, [first, second]) == 3
    assert [r.patch_id for r in read_manifest(merged)] == ["S1-000000", "S1-000001", "S2-000000"]
    before = merged.read_text()
    second.write_text("patch_id,scene\n")
    with pytest.raises(PatchSetError, match=r"columns differ from this version's manifest; delete"):
        concat_manifests(merged, [first, second])
    assert merged.read_text() == before, "a refused merge leaves the manifest as it was"


# --- reading and filtering records ------------------------------------------------------


def test_select_keeps_one_split_and_the_given_kinds_in_order() -> None:
    records = [
        _record(f"p{i}", split, kind)
        for i, (split, kind) in enumerate(
            [
                ("train", "positive"),
                ("train", "pool"),
                ("val", "positive"),
                ("train", "mined"),
                ("train", "negative"),
            ]
        )
    ]
    assert [r.patch_id for r in select(records, "train", NEGATIVE_KINDS)] == ["p3", "p4"]
    assert [r.patch_id for r in select(records, "train", POSITIVE_KINDS)] == ["p0"]
    assert [r.patch_id for r in select(records, TRAIN_SPLIT, (MINING_POOL,))] == ["p1"]
    assert select(records, "test", KINDS) == []
    assert select(records, "train", POSITIVE_KINDS)[0] is records[0], "the records themselves"


def _patch_set(root: Path, dtypes: dict[str, str]) -> list[PatchRecord]:
    """A real patch set: one shard per entry of ``dtypes`` (name -> pixel type), two patches
    each, and its manifest."""
    records = []
    for name, dtype in dtypes.items():
        shard = f"parts/{name}/{shard_file_name(name, 'train', 0)}"
        (root / shard).parent.mkdir(parents=True, exist_ok=True)
        with TFRecordWriter(root / shard) as writer:
            for i in range(2):
                image = np.full((8, 8), i + 1, dtype=dtype)
                offset = writer.write(encode_patch(tiled_patch_id(name, i), image, None))
                records.append(
                    replace(_record(tiled_patch_id(name, i)), scene=name, shard=shard, offset=offset)
                )
    write_manifest(PatchSetLayout(root).manifest, records)
    return records


def test_patch_set_load_reads_records_and_pixel_type(tmp_path: Path) -> None:
    records = _patch_set(tmp_path, {"S1": "uint16", "S2": "uint16"})
    assert [r.shard for r in first_per_shard(records)] == [records[0].shard, records[2].shard]
    assert record_dtype(tmp_path, records[3]) == "uint16"
    patches = PatchSet.load(tmp_path)
    assert patches.dtype == "uint16" and [r.patch_id for r in patches.records] == [
        r.patch_id for r in records
    ]
    assert patches.layout == PatchSetLayout(tmp_path)
    assert patches.objects_csv("S2") == tmp_path / "parts" / "S2" / "objects.csv"
    assert [r.patch_id for r in patches.select("train", NEGATIVE_KINDS)] == [r.patch_id for r in records]


def test_patch_set_load_takes_a_run_folders_manifest(tmp_path: Path) -> None:
    records = _patch_set(tmp_path / "patches", {"S1": "uint8"})
    run_manifest = tmp_path / "run" / "manifest.csv"
    run_manifest.parent.mkdir()
    write_manifest(run_manifest, [replace(records[0], kind=MINED, round=1)])
    patches = PatchSet.load(tmp_path / "patches", run_manifest)
    assert patches.dtype == "uint8" and [(r.kind, r.round) for r in patches.records] == [("mined", 1)]


def test_patch_set_load_refuses_empty_missing_or_mixed_sets(tmp_path: Path) -> None:
    with pytest.raises(PatchSetError) as info:
        PatchSet.load(tmp_path)
    assert str(tmp_path / "manifest.csv") in str(info.value)
    write_manifest(tmp_path / "manifest.csv", [])
    with pytest.raises(PatchSetError, match="the manifest lists no patch"):
        PatchSet.load(tmp_path)
    _patch_set(tmp_path, {"S1": "uint8", "S2": "uint16", "S3": "uint8"})
    # The scenes of the rarer type are named: those are the ones to tile elsewhere.
    with pytest.raises(
        PatchSetError, match=r"several pixel types \(uint8 and uint16: S2;.*impacts tile --out"
    ):
        PatchSet.load(tmp_path)


def test_the_format_is_read_without_tensorflow() -> None:
    code = "import sys, tiling.patchset; sys.exit('tensorflow' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
