"""Review store behaviour on SQLite and PostgreSQL: analysts, sessions, queue, decisions, audit."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import create_engine, text

from impacts.errors import ReviewError, ReviewNotFoundError
from service.review import store as store_module
from service.review.schemas import DetectionIn, QueueFilter
from service.review.store import ReviewStore
from tests.unit.service.review.conftest import FakeClock

Make = Callable[..., DetectionIn]


def _rows(store: ReviewStore, sql: str) -> list[tuple[object, ...]]:
    engine = create_engine(store.url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql))]
    finally:
        engine.dispose()


# ---------------------------------------------------------------- analysts and sessions
def test_passwords_are_stored_only_as_salted_hashes(store: ReviewStore) -> None:
    store.add_analyst("carol", "same-password")
    store.add_analyst("dave", "same-password")
    rows = dict(_rows(store, "SELECT name, password_hash FROM analysts"))
    assert set(rows) == {"alice", "bob", "carol", "dave"}
    assert all("pass" not in h and h.startswith("scrypt$") for h in rows.values())
    assert rows["carol"] != rows["dave"], "the same password must hash differently (per-user salt)"
    assert store.authenticate("carol", "same-password")
    assert not store.authenticate("carol", "same-passwore")
    assert not store.authenticate("nobody", "same-password")
    assert store.analysts() == ["alice", "bob", "carol", "dave"]


@pytest.mark.parametrize(
    ("name", "password", "match"),
    [
        ("alice", "another-pass", "already exists"),
        ("erin", "short", "too short"),
        ("x y", "long-enough", "name"),
    ],
)
def test_bad_analysts_are_refused(store: ReviewStore, name: str, password: str, match: str) -> None:
    with pytest.raises(ReviewError, match=match):
        store.add_analyst(name, password)


def test_sessions_store_hashes_expire_and_check_csrf(store: ReviewStore, clock: FakeClock) -> None:
    token, csrf = store.open_session("alice")
    other_token, other_csrf = store.open_session("bob")
    assert store.session_analyst(token) == "alice"
    assert store.session_analyst(other_token) == "bob"
    stored = " ".join(str(v) for row in _rows(store, "SELECT * FROM review_sessions") for v in row)
    for secret in (token.split(".")[1], csrf, other_csrf):
        assert secret not in stored, "tokens must never be stored in clear"
    assert store.check_csrf(token, csrf)
    assert not store.check_csrf(token, other_csrf), "another session's CSRF token must not pass"
    assert not store.check_csrf(token, "")
    sid = token.split(".")[0]
    assert store.session_analyst(f"{sid}.forged-secret") is None
    assert store.session_analyst("garbage") is None
    assert not store.check_csrf("garbage", csrf)
    clock.advance(3601)
    assert store.session_analyst(token) is None, "an expired session must not authenticate"
    assert not store.check_csrf(token, csrf)


def test_closed_session_is_gone(store: ReviewStore) -> None:
    token, _ = store.open_session("alice")
    store.close_session(token)
    assert store.session_analyst(token) is None
    store.close_session(token)  # a second logout is harmless
    with pytest.raises(ReviewNotFoundError, match="users add"):
        store.open_session("mallory")


# ---------------------------------------------------------------- detections and queue
def test_add_detections_is_idempotent_and_audited(store: ReviewStore, detections: Make) -> None:
    assert store.add_detections([detections(k) for k in range(3)]) == 3
    assert store.add_detections([detections(k) for k in range(5)]) == 2
    page = store.queue(QueueFilter(status=None))
    assert page.total == 5
    assert sorted(d.key for d in page.items) == [f"S1-{k:05d}@v1" for k in range(5)]
    first = store.detection(page.items[0].id)
    assert first.transform == (6.0, 0.0, 1000.0, 0.0, -6.0, -2000.0)
    assert first.window == (0, 0, 128, 128)
    assert [a.action for a in store.history(first.id)] == ["add"]
    k = int(first.key[3:8])
    assert store.crop_png(first.id, "crop").endswith(b"crop" + bytes([k]))
    assert store.crop_png(first.id, "mask").endswith(b"mask")
    assert store.crop_png(first.id, "context").endswith(b"context")
    with pytest.raises(ReviewError, match="crop, mask, context"):
        store.crop_png(first.id, "full")
    with pytest.raises(ReviewNotFoundError):
        store.crop_png(10**6, "crop")
    with pytest.raises(ReviewNotFoundError):
        store.detection(10**6)


def test_queue_sorts_and_filters(store: ReviewStore, detections: Make) -> None:
    items = [
        detections(0, "S2", 0.9, "v1"),
        detections(1, "S1", 0.7, "v1"),
        detections(2, "S1", 0.95, "v2"),
        detections(3, "S2", 0.4, "v2"),
        detections(4, "S1", 0.6, "v1"),
    ]
    store.add_detections(items)
    ids = {d.key: d.id for d in store.queue(QueueFilter(status=None)).items}

    def keys(**kw: object) -> list[str]:
        return [d.key[:8] for d in store.queue(QueueFilter.model_validate(kw)).items]

    assert keys(status=None) == ["S1-00002", "S2-00000", "S1-00001", "S1-00004", "S2-00003"]
    assert keys(status=None, order="scene") == ["S1-00002", "S1-00001", "S1-00004", "S2-00000", "S2-00003"]
    assert keys(status=None, scene="S2") == ["S2-00000", "S2-00003"]
    assert keys(status=None, score_min=0.6, score_max=0.9) == ["S2-00000", "S1-00001", "S1-00004"]
    assert keys(status=None, model_version="v2") == ["S1-00002", "S2-00003"]
    page = store.queue(QueueFilter(status=None, limit=2, offset=2))
    assert (page.total, [d.key[:8] for d in page.items]) == (5, ["S1-00001", "S1-00004"])

    store.decide(ids["S1-00002@v2"], "alice", "accept", None, None)
    store.decide(ids["S2-00000@v1"], "bob", "unsure", None, "hard to say")
    assert keys() == ["S1-00001", "S1-00004", "S2-00003"], "the default queue lists pending detections"
    assert keys(status="accept") == ["S1-00002"]
    assert keys(status="unsure") == ["S2-00000"]
    assert keys(status=None, undecided_by="alice") == ["S2-00000", "S1-00001", "S1-00004", "S2-00003"]
    assert keys(status=None, undecided_by="bob") == ["S1-00002", "S1-00001", "S1-00004", "S2-00003"]


def test_queue_filter_validates(store: ReviewStore) -> None:
    for bad in ({"limit": 0}, {"limit": 201}, {"status": "done"}, {"scene": "../x"}, {"order": "random"}):
        with pytest.raises(ValueError):
            QueueFilter.model_validate(bad)


# ---------------------------------------------------------------- decisions, conflicts, undo, audit
def test_status_follows_the_live_decisions(store: ReviewStore, detections: Make) -> None:
    store.add_detections([detections(0)])
    (d,) = store.queue(QueueFilter()).items
    assert d.status == "pending"
    assert store.decide(d.id, "alice", "accept", None, None).detection_status == "accept"
    assert store.decide(d.id, "bob", "accept", None, None).detection_status == "accept"
    out = store.decide(d.id, "bob", "reject", "shadow", "  looks like a shadow  ")
    assert (out.detection_status, out.note, out.live) == ("conflict", "looks like a shadow", True)
    conflict = store.detection(d.id)
    assert conflict.status == "conflict"
    assert {(x.analyst, x.decision, x.reason) for x in conflict.decisions} == {
        ("alice", "accept", None),
        ("bob", "reject", "shadow"),
    }, "both sides of a conflict stay visible"
    undone = store.undo("bob")
    assert undone is not None and (undone.decision, undone.live, undone.ended_by) == (
        "reject",
        False,
        "undone",
    )
    assert store.detection(d.id).status == "accept", "undo brings back bob's replaced accept"
    assert store.undo("bob") is not None
    assert store.undo("alice") is not None
    assert store.detection(d.id).status == "pending"
    assert store.undo("alice") is None


def test_replacing_keeps_the_old_decision_in_history(store: ReviewStore, detections: Make) -> None:
    store.add_detections([detections(0)])
    (d,) = store.queue(QueueFilter()).items
    first = store.decide(d.id, "alice", "accept", None, None)
    second = store.decide(d.id, "alice", "reject", "crater", None)
    assert store.decide(d.id, "alice", "reject", "crater", None).id == second.id, "same decision: no change"
    every = store.decisions(d.id)
    assert [(x.id, x.live, x.ended_by) for x in every] == [
        (first.id, False, "replaced"),
        (second.id, True, None),
    ]
    assert [x.analyst for x in store.detection(d.id).decisions] == ["alice"]
    history = store.history(d.id)
    assert [h.action for h in history] == ["add", "decide", "replace"]
    replace = history[-1]
    assert replace.analyst == "alice"
    assert replace.before is not None and replace.after is not None
    assert (replace.before["status"], replace.before["decision"]["decision"]) == ("accept", "accept")
    assert (replace.after["status"], replace.after["decision"]["reason"]) == ("reject", "crater")
    store.undo("alice")
    assert store.detection(d.id).status == "accept"
    assert [h.action for h in store.history(d.id)] == ["add", "decide", "replace", "undo"]


def test_undo_goes_back_in_order(store: ReviewStore, detections: Make) -> None:
    store.add_detections([detections(k) for k in range(3)])
    ids = [d.id for d in store.queue(QueueFilter(order="scene")).items]
    for i in ids:
        store.decide(i, "alice", "accept", None, None)
    store.decide(ids[0], "bob", "reject", "other", None)
    assert [u.detection_id for u in (store.undo("alice"), store.undo("alice"))] == [ids[2], ids[1]]  # type: ignore[union-attr]
    assert [store.detection(i).status for i in ids] == ["conflict", "pending", "pending"]


@pytest.mark.parametrize(
    ("decision", "reason", "note", "match"),
    [
        ("maybe", None, None, "unknown"),
        ("reject", None, None, "needs a reason"),
        ("reject", "ugly", None, "needs a reason"),
        ("accept", "crater", None, "only a rejection"),
        ("accept", None, "x" * 2001, "note"),
    ],
)
def test_invalid_decisions_are_refused(
    store: ReviewStore, detections: Make, decision: str, reason: str | None, note: str | None, match: str
) -> None:
    store.add_detections([detections(0)])
    (d,) = store.queue(QueueFilter()).items
    with pytest.raises(ReviewError, match=match):
        store.decide(d.id, "alice", decision, reason, note)
    assert store.detection(d.id).status == "pending"
    assert [h.action for h in store.history(d.id)] == ["add"]


def test_unknown_analyst_or_detection(store: ReviewStore, detections: Make) -> None:
    store.add_detections([detections(0)])
    (d,) = store.queue(QueueFilter()).items
    with pytest.raises(ReviewNotFoundError, match="mallory"):
        store.decide(d.id, "mallory", "accept", None, None)
    with pytest.raises(ReviewNotFoundError, match="detection"):
        store.decide(10**6, "alice", "accept", None, None)
    with pytest.raises(ReviewNotFoundError):
        store.undo("mallory")
    with pytest.raises(ReviewNotFoundError):
        store.history(10**6)


def test_progress_accepted_and_rejected(
    store: ReviewStore, detections: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "PAGE", 2)  # several pages in accepted() and rejected()
    store.add_detections([detections(k, "S1") for k in range(6)] + [detections(k, "S2") for k in range(3)])
    ids = {d.key[:8]: d.id for d in store.queue(QueueFilter(status=None, limit=200)).items}
    for k in range(5):
        store.decide(ids[f"S1-{k:05d}"], "alice", "accept", None, None)
    store.decide(ids["S1-00004"], "bob", "reject", "crater", None)  # conflict
    store.decide(ids["S2-00000"], "alice", "reject", "shadow", None)
    store.decide(ids["S2-00001"], "bob", "reject", "nodata_border", "edge")
    store.decide(ids["S2-00002"], "bob", "unsure", None, None)
    progress = {p.scene: p for p in store.progress()}
    assert progress["S1"].model_dump() == {
        "scene": "S1",
        "total": 6,
        "accepted": 4,
        "rejected": 0,
        "unsure": 0,
        "conflict": 1,
        "pending": 1,
    }
    assert (progress["S2"].rejected, progress["S2"].unsure, progress["S2"].pending) == (2, 1, 0)
    assert [d.key[:8] for d in store.accepted()] == [f"S1-{k:05d}" for k in range(4)]
    rejected = [(d.key[:8], dec.reason, dec.analyst) for d, dec in store.rejected()]
    assert rejected == [("S2-00000", "shadow", "alice"), ("S2-00001", "nodata_border", "bob")]
