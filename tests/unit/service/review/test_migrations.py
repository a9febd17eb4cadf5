"""Schema migrations: upgrades keep reviews, opening is idempotent, models match migrations."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from impacts.errors import ReviewDatabaseError
from service.review.migrations import alembic_config, make_engine
from service.review.models import Base
from service.review.schemas import DetectionIn, QueueFilter
from service.review.store import ReviewStore


def _revision(url: str) -> str | None:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def _head() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def test_upgrade_from_0001_keeps_reviews(db_url: str, detections: Callable[..., DetectionIn]) -> None:
    old = ReviewStore(db_url)
    old.migrate("0001")
    assert _revision(db_url) == "0001"
    old.add_analyst("alice", "alice-pass")
    old.add_detections([detections(0), detections(1)])
    ids = [d.id for d in old.queue(QueueFilter()).items]
    old.decide(ids[0], "alice", "reject", "crater", "rim visible")
    old.close()

    store = ReviewStore.open(db_url)
    try:
        assert _revision(db_url) == _head()
        rejected = [(d.id, dec.reason, dec.note) for d, dec in store.rejected()]
        assert rejected == [(ids[0], "crater", "rim visible")]
        assert store.authenticate("alice", "alice-pass")
        assert [h.action for h in store.history(ids[0])] == ["add", "decide"]
        assert store.detection(ids[1]).status == "pending"
    finally:
        store.close()


def test_open_is_idempotent(db_url: str, detections: Callable[..., DetectionIn]) -> None:
    first = ReviewStore.open(db_url)
    first.add_analyst("alice", "alice-pass")
    first.add_detections([detections(0)])
    first.close()
    for _ in range(2):
        again = ReviewStore.open(db_url)
        assert again.analysts() == ["alice"]
        assert again.queue(QueueFilter()).total == 1
        again.close()
    assert _revision(db_url) == _head()


def test_models_match_the_migrations(db_url: str) -> None:
    ReviewStore.open(db_url).close()
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(
                MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata
            )
    finally:
        engine.dispose()
    assert diff == [], "models.py and migrations/versions differ: write a new revision"


def test_concurrent_opens_of_a_new_database(db_url: str) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def open_one() -> None:
        try:
            barrier.wait()
            ReviewStore.open(db_url).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert _revision(db_url) == _head()


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("mysql://u:secret@localhost/db", "not supported"),
        ("not a url", "invalid"),
        ("postgresql+psycopg://u:secret@127.0.0.1:1/db", "cannot be opened"),
    ],
)
def test_bad_databases_say_what_to_do(url: str, match: str) -> None:
    with pytest.raises(ReviewDatabaseError, match=match) as info:
        ReviewStore.open(url)
    assert "secret" not in str(info.value), "the password must not leak into messages"


def test_sqlite_in_a_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ReviewDatabaseError, match="folder exists"):
        ReviewStore.open(f"sqlite:///{tmp_path / 'nope' / 'review.db'}")


def test_a_database_from_a_newer_version_is_refused(db_url: str) -> None:
    ReviewStore.open(db_url).close()
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    finally:
        engine.dispose()
    with pytest.raises(ReviewDatabaseError, match="newer mars-impacts"):
        ReviewStore.open(db_url)
