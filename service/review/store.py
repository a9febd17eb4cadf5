"""The review store: detections, analysts, sessions, decisions and their audit, in SQL.

SQLite file by default (``sqlite:///review.db``), PostgreSQL by URL
(``postgresql+psycopg://USER:PASSWORD@HOST:PORT/DB``) when several processes write.
:meth:`ReviewStore.open` migrates the schema to the newest revision (Alembic), so an upgrade
never loses reviews.

API (all methods are thread-safe; make one store per process)::

    ReviewStore(url, *, session_ttl_s=43200, busy_timeout_s=30, clock=None)  # no migration
    ReviewStore.open(url, **same)        # migrate to head, then as above
    close(); migrate(revision="head")
    add_analyst(name, password); analysts() -> list[str]; authenticate(name, password) -> bool
    open_session(name) -> (token, csrf); session_analyst(token) -> str | None
    check_csrf(token, csrf) -> bool; close_session(token)
    add_detections(items, analyst=None) -> int           # new ones; existing keys skipped
    queue(QueueFilter) -> QueuePage; detection(id) -> DetectionOut
    crop_png(id, "crop" | "mask" | "context") -> bytes
    decide(id, analyst, decision, reason, note) -> DecisionOut
    undo(analyst) -> DecisionOut | None; decisions(id) -> list[DecisionOut]  # every one, ended too
    history(id) -> list[AuditOut]; progress() -> list[SceneProgress]
    accepted() -> Iterator[DetectionOut]; rejected() -> Iterator[(DetectionOut, DecisionOut)]

Rules: a detection with no live decision is ``pending``; when its live decisions agree it
has that status, when analysts disagree it is ``conflict`` (every decision is kept). An
analyst deciding again replaces their own live decision (the old one stays, ended as
``replaced``); deciding the same again changes nothing. :meth:`undo` withdraws the
analyst's most recent live decision and brings back the one it replaced, if any. Every
change writes one audit row with the state before and after.

Concurrency: every write is one transaction. SQLite runs in WAL mode and writes start with
``BEGIN IMMEDIATE`` under a busy timeout, so concurrent writers wait instead of failing;
PostgreSQL writes lock the analyst's row, then the detection's (``FOR NO KEY UPDATE``), so
two analysts deciding on one detection both land and the status reflects both.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from impacts.errors import ReviewDatabaseError, ReviewError, ReviewNotFoundError
from service.review.migrations import WRITE_OPTION, make_engine, redact, upgrade
from service.review.models import (
    DECISIONS,
    IMAGE_KINDS,
    REASONS,
    Analyst,
    AuditEntry,
    Decision,
    Detection,
    DetectionImage,
)
from service.review.schemas import (
    AuditOut,
    DecisionOut,
    DetectionIn,
    DetectionOut,
    LiveDecision,
    QueueFilter,
    QueuePage,
    SceneProgress,
    decision_dict,
    decision_out,
    detection_out,
    status_of,
)
from service.review.security import AccountsMixin

log = logging.getLogger(__name__)

ADD_CHUNK = 200
PAGE = 500
MAX_NOTE_CHARS = 2000

__all__ = ["DECISIONS", "REASONS", "ReviewStore"]


class ReviewStore(AccountsMixin):
    """Detections, analysts, sessions, decisions and audit in one SQL database.

    Args:
        url: ``sqlite:///PATH.db`` or ``postgresql+psycopg://USER:PASSWORD@HOST:PORT/DB``.
        session_ttl_s: How long a login session lasts.
        busy_timeout_s: How long a SQLite writer waits for the lock before failing.
        clock: Returns the current aware UTC time (tests pass a fake one).

    Raises:
        ReviewDatabaseError: The URL is invalid or names an unsupported backend.
    """

    def __init__(
        self,
        url: str,
        *,
        session_ttl_s: float = 12 * 3600,
        busy_timeout_s: float = 30.0,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.url = url
        self._engine = make_engine(url, busy_timeout_s)
        self._writer = self._engine.execution_options(**{WRITE_OPTION: True})
        self._session_ttl = timedelta(seconds=session_ttl_s)
        self._clock = clock or (lambda: datetime.now(UTC))
        self._insert = pg_insert if self._engine.dialect.name == "postgresql" else sqlite_insert

    @classmethod
    def open(cls, url: str, **kwargs: Any) -> ReviewStore:
        """Open a store and migrate its schema to the newest revision (idempotent).

        Args:
            url: Database URL, see the class.
            **kwargs: Passed to the constructor.

        Returns:
            The store, ready to use.

        Raises:
            ReviewDatabaseError: The database cannot be reached, created or migrated.
        """
        store = cls(url, **kwargs)
        try:
            store.migrate()
        except BaseException:
            store.close()
            raise
        return store

    def migrate(self, revision: str = "head") -> None:
        """Upgrade the schema to ``revision`` (see :func:`service.review.migrations.upgrade`).

        Raises:
            ReviewDatabaseError: The database cannot be reached or migrated.
        """
        upgrade(self._engine, revision)

    def close(self) -> None:
        """Close every pooled connection."""
        self._engine.dispose()

    # ----------------------------------------------------------------- transactions
    @contextmanager
    def _tx(self, write: bool) -> Iterator[Session]:
        try:
            with Session(self._writer if write else self._engine, expire_on_commit=False) as s, s.begin():
                yield s
        except OperationalError as exc:
            raise ReviewDatabaseError(
                f"review database {redact(self.url)}: {exc.orig}; retry, or check the server and the disk"
            ) from exc

    def _lock_analyst(self, s: Session, name: str) -> Analyst:
        row = s.scalars(select(Analyst).where(Analyst.name == name).with_for_update(key_share=True)).first()
        if row is None:
            raise ReviewNotFoundError(
                f"analyst {name!r} does not exist; add it: impacts review users add {name}"
            )
        return row

    # ----------------------------------------------------------------- detections
    def add_detections(self, items: list[DetectionIn], analyst: str | None = None) -> int:
        """Add detections to the queue; a key already in the store is skipped.

        Writes in transactions of 200 so that analysts' decisions interleave with an import.

        Args:
            items: Detections with their images.
            analyst: Who adds them (recorded in the audit); None for the importer.

        Returns:
            How many were new.
        """
        added = 0
        for start in range(0, len(items), ADD_CHUNK):
            with self._tx(write=True) as s:
                now = self._clock()
                for item in items[start : start + ADD_CHUNK]:
                    values = item.model_dump(exclude={"crop_png", "mask_png", "context_png", "window"})
                    values.update(
                        transform=list(item.transform),
                        win_row=item.window[0],
                        win_col=item.window[1],
                        win_height=item.window[2],
                        win_width=item.window[3],
                        created_at=now,
                        status="pending",
                    )
                    stmt = (
                        self._insert(Detection)
                        .values(**values)
                        .on_conflict_do_nothing(index_elements=["key"])
                        .returning(Detection.id)
                    )
                    new_id = s.scalar(stmt)
                    if new_id is None:
                        continue
                    s.add(
                        DetectionImage(
                            detection_id=new_id,
                            crop_png=item.crop_png,
                            mask_png=item.mask_png,
                            context_png=item.context_png,
                        )
                    )
                    after = {k: values[k] for k in ("key", "scene", "score", "model_version", "source")}
                    s.add(AuditEntry(at=now, analyst=analyst, action="add", detection_id=new_id, after=after))
                    added += 1
        log.debug("added %d of %d detections", added, len(items))
        return added

    def _live(self, s: Session, ids: list[int]) -> dict[int, list[LiveDecision]]:
        out: dict[int, list[LiveDecision]] = {i: [] for i in ids}
        if not ids:
            return out
        rows = s.execute(
            select(Decision, Analyst.name)
            .join(Analyst, Analyst.id == Decision.analyst_id)
            .where(Decision.detection_id.in_(ids), Decision.live)
            .order_by(Decision.id)
        )
        for d, name in rows:
            out[d.detection_id].append(
                LiveDecision.model_validate(
                    {
                        "id": d.id,
                        "analyst": name,
                        "decision": d.decision,
                        "reason": d.reason,
                        "note": d.note,
                        "at": d.at,
                    }
                )
            )
        return out

    def queue(self, f: QueueFilter) -> QueuePage:
        """One page of detections matching ``f``, by score (or scene, then score)."""
        conditions: list[Any] = []
        if f.scene is not None:
            conditions.append(Detection.scene == f.scene)
        if f.score_min is not None:
            conditions.append(Detection.score >= f.score_min)
        if f.score_max is not None:
            conditions.append(Detection.score <= f.score_max)
        if f.status is not None:
            conditions.append(Detection.status == f.status)
        if f.model_version is not None:
            conditions.append(Detection.model_version == f.model_version)
        if f.undecided_by is not None:
            mine = (
                select(Decision.id)
                .join(Analyst, Analyst.id == Decision.analyst_id)
                .where(Decision.detection_id == Detection.id, Decision.live, Analyst.name == f.undecided_by)
            )
            conditions.append(~mine.exists())
        order = [Detection.score.desc(), Detection.id]
        if f.order == "scene":
            order.insert(0, Detection.scene)  # type: ignore[arg-type]
        with self._tx(write=False) as s:
            total = s.scalar(select(func.count(Detection.id)).where(*conditions)) or 0
            rows = list(
                s.scalars(
                    select(Detection).where(*conditions).order_by(*order).limit(f.limit).offset(f.offset)
                )
            )
            live = self._live(s, [r.id for r in rows])
        return QueuePage(
            items=[detection_out(r, live[r.id]) for r in rows], total=total, offset=f.offset, limit=f.limit
        )

    def detection(self, detection_id: int) -> DetectionOut:
        """One detection with its live decisions.

        Raises:
            ReviewNotFoundError: No such detection.
        """
        with self._tx(write=False) as s:
            row = s.get(Detection, detection_id)
            if row is None:
                raise ReviewNotFoundError(
                    f"detection {detection_id} does not exist; list them with the queue"
                )
            return detection_out(row, self._live(s, [detection_id])[detection_id])

    def crop_png(self, detection_id: int, kind: str) -> bytes:
        """The PNG of a detection: ``crop``, ``mask`` (0/255 box outline) or ``context``.

        Raises:
            ReviewError: Unknown kind.
            ReviewNotFoundError: No such detection.
        """
        if kind not in IMAGE_KINDS:
            raise ReviewError(f"image kind {kind!r} unknown; use one of {', '.join(IMAGE_KINDS)}")
        column = getattr(DetectionImage, f"{kind}_png")
        with self._tx(write=False) as s:
            data = s.scalar(select(column).where(DetectionImage.detection_id == detection_id))
        if data is None:
            raise ReviewNotFoundError(f"detection {detection_id} does not exist; list them with the queue")
        return bytes(data)

    # ----------------------------------------------------------------- decisions
    def _restatus(self, s: Session, detection: Detection) -> str:
        kinds = s.scalars(
            select(Decision.decision).where(Decision.detection_id == detection.id, Decision.live)
        )
        detection.status = status_of(list(kinds))
        return detection.status

    def decide(
        self, detection_id: int, analyst: str, decision: str, reason: str | None, note: str | None
    ) -> DecisionOut:
        """Record an analyst's decision, replacing their own earlier one on the detection.

        Args:
            detection_id: The detection.
            analyst: Who decides (the session's analyst, never taken from a request body).
            decision: ``accept``, ``reject`` or ``unsure``.
            reason: Required with ``reject`` (crater, shadow, nodata_border, artefact, other);
                must be None otherwise.
            note: Optional free text (at most 2000 characters).

        Returns:
            The live decision, with the detection's new status.

        Raises:
            ReviewError: Invalid decision, reason or note.
            ReviewNotFoundError: Unknown detection or analyst.
        """
        if decision not in DECISIONS:
            raise ReviewError(f"decision {decision!r} unknown; use one of {', '.join(DECISIONS)}")
        if decision == "reject" and reason not in REASONS:
            raise ReviewError(f"a rejection needs a reason, one of {', '.join(REASONS)} (got {reason!r})")
        if decision != "reject" and reason is not None:
            raise ReviewError(f"only a rejection takes a reason; send no reason with {decision!r}")
        note = (note or "").strip() or None
        if note is not None and len(note) > MAX_NOTE_CHARS:
            raise ReviewError(f"note of {len(note)} characters; keep it under {MAX_NOTE_CHARS}")
        with self._tx(write=True) as s:
            who = self._lock_analyst(s, analyst)
            detection = s.scalars(
                select(Detection).where(Detection.id == detection_id).with_for_update(key_share=True)
            ).first()
            if detection is None:
                raise ReviewNotFoundError(
                    f"detection {detection_id} does not exist; list them with the queue"
                )
            old = s.scalars(
                select(Decision).where(
                    Decision.detection_id == detection_id, Decision.analyst_id == who.id, Decision.live
                )
            ).first()
            if old is not None and (old.decision, old.reason, old.note) == (decision, reason, note):
                return decision_out(old, analyst, detection.status)
            now, status_before = self._clock(), detection.status
            if old is not None:
                old.live, old.ended_at, old.ended_by = False, now, "replaced"
                s.flush()  # the old one must stop being live before the new one is
            new = Decision(
                detection_id=detection_id,
                analyst_id=who.id,
                decision=decision,
                reason=reason,
                note=note,
                at=now,
                live=True,
                replaces_id=old.id if old else None,
            )
            s.add(new)
            s.flush()
            status = self._restatus(s, detection)
            s.add(
                AuditEntry(
                    at=now,
                    analyst=analyst,
                    action="replace" if old else "decide",
                    detection_id=detection_id,
                    before={"status": status_before, "decision": decision_dict(old, analyst)},
                    after={"status": status, "decision": decision_dict(new, analyst)},
                )
            )
            return decision_out(new, analyst, status)

    def undo(self, analyst: str) -> DecisionOut | None:
        """Withdraw the analyst's most recent live decision, bringing back the one it replaced.

        Returns:
            The withdrawn decision (no longer live), or None when there is nothing to undo.

        Raises:
            ReviewNotFoundError: Unknown analyst.
        """
        with self._tx(write=True) as s:
            who = self._lock_analyst(s, analyst)
            last = s.scalars(
                select(Decision)
                .where(Decision.analyst_id == who.id, Decision.live)
                .order_by(Decision.id.desc())
                .limit(1)
            ).first()
            if last is None:
                return None
            detection = s.scalars(
                select(Detection).where(Detection.id == last.detection_id).with_for_update(key_share=True)
            ).one()
            now, status_before = self._clock(), detection.status
            last.live, last.ended_at, last.ended_by = False, now, "undone"
            s.flush()
            restored = s.get(Decision, last.replaces_id) if last.replaces_id is not None else None
            if restored is not None:
                restored.live, restored.ended_at, restored.ended_by = True, None, None
                s.flush()
            status = self._restatus(s, detection)
            s.add(
                AuditEntry(
                    at=now,
                    analyst=analyst,
                    action="undo",
                    detection_id=detection.id,
                    before={"status": status_before, "decision": decision_dict(last, analyst)},
                    after={"status": status, "decision": decision_dict(restored, analyst)},
                )
            )
            return decision_out(last, analyst, status)

    def decisions(self, detection_id: int) -> list[DecisionOut]:
        """Every decision on a detection, live and ended, oldest first."""
        with self._tx(write=False) as s:
            status = s.scalar(select(Detection.status).where(Detection.id == detection_id))
            if status is None:
                raise ReviewNotFoundError(
                    f"detection {detection_id} does not exist; list them with the queue"
                )
            rows = s.execute(
                select(Decision, Analyst.name)
                .join(Analyst, Analyst.id == Decision.analyst_id)
                .where(Decision.detection_id == detection_id)
                .order_by(Decision.id)
            )
            return [decision_out(d, name, status) for d, name in rows]

    def history(self, detection_id: int) -> list[AuditOut]:
        """The audit rows of a detection, oldest first.

        Raises:
            ReviewNotFoundError: No such detection.
        """
        with self._tx(write=False) as s:
            if s.get(Detection, detection_id) is None:
                raise ReviewNotFoundError(
                    f"detection {detection_id} does not exist; list them with the queue"
                )
            rows = s.scalars(
                select(AuditEntry).where(AuditEntry.detection_id == detection_id).order_by(AuditEntry.id)
            )
            return [AuditOut.model_validate(r, from_attributes=True) for r in rows]

    def progress(self) -> list[SceneProgress]:
        """Per scene: how many detections there are in each status, sorted by scene."""
        counts: dict[str, dict[str, int]] = {}
        with self._tx(write=False) as s:
            rows = s.execute(
                select(Detection.scene, Detection.status, func.count()).group_by(
                    Detection.scene, Detection.status
                )
            )
            for scene, status, n in rows:
                counts.setdefault(scene, {})[status] = n
        return [
            SceneProgress(
                scene=scene,
                total=sum(c.values()),
                accepted=c.get("accept", 0),
                rejected=c.get("reject", 0),
                unsure=c.get("unsure", 0),
                conflict=c.get("conflict", 0),
                pending=c.get("pending", 0),
            )
            for scene, c in sorted(counts.items())
        ]

    def _by_status(self, status: str) -> Iterator[tuple[DetectionOut, Detection]]:
        """Detections of one status in id order, a page per short read transaction."""
        after = 0
        while True:
            with self._tx(write=False) as s:
                rows = list(
                    s.scalars(
                        select(Detection)
                        .where(Detection.status == status, Detection.id > after)
                        .order_by(Detection.id)
                        .limit(PAGE)
                    )
                )
                live = self._live(s, [r.id for r in rows])
            for r in rows:
                yield detection_out(r, live[r.id]), r
            if len(rows) < PAGE:
                return
            after = rows[-1].id

    def accepted(self) -> Iterator[DetectionOut]:
        """Accepted detections (every live decision accepts), in id order."""
        for out, _ in self._by_status("accept"):
            yield out

    def rejected(self) -> Iterator[tuple[DetectionOut, DecisionOut]]:
        """Rejected detections with their latest live rejection, in id order."""
        for out, row in self._by_status("reject"):
            latest = out.decisions[-1]
            yield (
                out,
                DecisionOut(**latest.model_dump(), detection_id=row.id, live=True, detection_status="reject"),
            )
