"""``impacts review``: users, import, export through the real click entry point."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from impacts.cli import main
from service.review.schemas import QueueFilter
from service.review.store import ReviewStore
from tests.unit.service.review.test_importer import predict_geojson


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'review.db'}"
    monkeypatch.setenv("IMPACTS_REVIEW_DB_URL", url)
    return url


def test_users_add_reads_the_password_from_stdin_or_a_prompt(db: str) -> None:
    runner = CliRunner()
    result = runner.invoke(
        main, ["review", "users", "add", "alice", "--password-stdin"], input="s3cret-pass\n"
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["review", "users", "add", "bob"], input="bob-password\nbob-password\n")
    assert result.exit_code == 0, result.output
    assert "bob-password" not in result.output, "the prompt must not echo the password"
    listed = runner.invoke(main, ["review", "users", "list"])
    assert listed.output.split() == ["alice", "bob"]
    store = ReviewStore.open(db)
    try:
        assert store.authenticate("alice", "s3cret-pass")
        assert store.authenticate("bob", "bob-password")
    finally:
        store.close()


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["alice", "--password-stdin"], "short\n", "password too short"),
        (["a/b", "--password-stdin"], "long-enough\n", "analyst name"),
    ],
)
def test_users_add_refuses_bad_input(db: str, args: list[str], stdin: str, message: str) -> None:
    result = CliRunner().invoke(main, ["review", "users", "add", *args], input=stdin)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output


def test_the_password_is_never_an_option(db: str) -> None:
    result = CliRunner().invoke(main, ["review", "users", "add", "alice", "--password", "x"])
    assert result.exit_code == 2 and "No such option" in result.output


def test_import_then_export(scenes_dir: Path, tmp_path: Path, db: str) -> None:
    predictions = tmp_path / "pred"
    predictions.mkdir()
    one = sorted(scenes_dir.glob("*_objects.csv"))[0].name.removesuffix("_objects.csv")
    predict_geojson(scenes_dir, predictions / "A_detections.geojson", scenes=[one])
    runner = CliRunner()
    result = runner.invoke(main, ["review", "import", str(predictions), "--scenes", str(scenes_dir)])
    assert result.exit_code == 0, result.output
    assert "already queued" in result.output
    store = ReviewStore.open(db)
    try:
        store.add_analyst("alice", "alice-pass")
        page = store.queue(QueueFilter())
        assert page.total > 0
        store.decide(page.items[0].id, "alice", "reject", "shadow", None)
    finally:
        store.close()
    out = tmp_path / "export"
    result = runner.invoke(main, ["review", "export", "--out", str(out), "--db", db])
    assert result.exit_code == 0, result.output
    assert "rejected (hard negatives) 1" in result.output
    assert len((out / "hard_negatives.csv").read_text().splitlines()) == 2


def test_import_errors_are_one_line(scenes_dir: Path, tmp_path: Path, db: str) -> None:
    bad = tmp_path / "bad.geojson"
    bad.write_text("{")
    result = CliRunner().invoke(main, ["review", "import", str(bad), "--scenes", str(scenes_dir)])
    assert result.exit_code == 1
    assert "cannot be read as JSON" in result.output and "Traceback" not in result.output


def test_help_imports_neither_sqlalchemy_nor_tensorflow() -> None:
    code = (
        "import sys\nfrom impacts.cli import main\n"
        "try:\n    main(['review', '--help'], standalone_mode=False)\nexcept SystemExit:\n    pass\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'sqlalchemy', 'tensorflow', 'alembic'}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stdout + result.stderr
