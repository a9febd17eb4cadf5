"""The whole loop, through the commands: predictions are queued for review, an analyst
rejects one, the export's hard-negative list becomes a ``reviewed`` training patch, and
the next round's training input reads it."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from impacts.cli import main
from service.review.schemas import QueueFilter
from service.review.store import ReviewStore
from tests.conftest import copy_scenes
from tests.unit.service.review.test_importer import predict_geojson
from tiling.patchset import read_manifest


def invoke(*args: str, stdin: str | None = None) -> str:
    result = CliRunner().invoke(main, list(args), input=stdin)
    assert result.exit_code == 0, result.output
    return result.output


def test_a_rejected_detection_becomes_a_reviewed_training_patch(scenes_dir: Path, tmp_path: Path) -> None:
    scenes = copy_scenes(scenes_dir, tmp_path / "scenes")
    patches = tmp_path / "patches"
    invoke("-q", "tile", "--scenes", str(scenes), "--out", str(patches), "--seed", "5")
    split_of = {r.scene: r.split for r in read_manifest(patches / "manifest.csv")}
    train_scene = sorted(s for s, split in split_of.items() if split == "train")[0]
    detections = predict_geojson(scenes, tmp_path / f"{train_scene}_detections.geojson", [train_scene])

    db = f"sqlite:///{tmp_path / 'review.db'}"
    invoke("review", "import", str(detections), "--scenes", str(scenes), "--db", db)
    invoke("review", "users", "add", "ada", "--password-stdin", "--db", db, stdin="ada-password\n")
    store = ReviewStore.open(db)
    try:
        first, second = store.queue(QueueFilter(status=None)).items[:2]
        store.decide(first.id, "ada", "reject", "crater", "an old crater, not a fresh impact")
        store.decide(second.id, "ada", "accept", None, None)
    finally:
        store.close()
    invoke("review", "export", "--out", str(tmp_path / "export"), "--db", db)
    with (tmp_path / "export" / "hard_negatives.csv").open(newline="") as fh:
        (rejected,) = list(csv.DictReader(fh))
    assert rejected["scene"] == train_scene and rejected["reason"] == "crater"

    invoke(
        "tile",
        "add-reviewed",
        str(tmp_path / "export" / "hard_negatives.csv"),
        "--scenes",
        str(scenes),
        "--out",
        str(patches),
    )

    from tiling.patchset import NEGATIVE_KINDS, PatchSet
    from training.data import records_dataset

    patch_set = PatchSet.load(patches)
    (reviewed,) = [r for r in patch_set.records if r.kind == "reviewed"]
    assert reviewed.split == "train" and reviewed.scene == train_scene
    assert reviewed in patch_set.select("train", NEGATIVE_KINDS)  # the next round trains on it
    box = [int(rejected[k]) for k in ("row_min", "col_min", "row_max", "col_max")]
    assert reviewed.row <= box[0] and box[2] < reviewed.row + reviewed.height
    assert reviewed.col <= box[1] and box[3] < reviewed.col + reviewed.width
    (element,) = list(records_dataset(patch_set, [reviewed]).as_numpy_iterator())
    assert element["image"].shape == (reviewed.height, reviewed.width, 1) and np.ptp(element["image"]) > 0
