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

Rules of decisions, undo and the audit: :mod:`service.review.decisions`; accounts, sessions
and API tokens: :mod:`service.review.security`.

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
from service.review.decisions import DecisionsMixin
from service.review.migrations import WRITE_OPTION, make_engine, redact, upgrade
from service.review.models import (
    DECISIONS,
    IMAGE_KINDS,
    REASONS,
    Analyst,
    AuditEntry,
    Decision,
    DetectionImage,
    DetectionRow,
)
from service.review.schemas import (
    DecisionOut,
    DetectionIn,
    DetectionOut,
    LiveDecision,
    QueueFilter,
    QueuePage,
    SceneProgress,
    detection_out,
)
from service.review.security import AccountsMixin

log = logging.getLogger(__name__)

ADD_CHUNK = 200
PAGE = 500

__all__ = ["DECISIONS", "REASONS", "ReviewStore"]


class ReviewStore(AccountsMixin, DecisionsMixin):
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
                        self._insert(DetectionRow)
                        .values(**values)
                        .on_conflict_do_nothing(index_elements=["key"])
                        .returning(DetectionRow.id)
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
            conditions.append(DetectionRow.scene == f.scene)
        if f.score_min is not None:
            conditions.append(DetectionRow.score >= f.score_min)
        if f.score_max is not None:
            conditions.append(DetectionRow.score <= f.score_max)
        if f.status is not None:
            conditions.append(DetectionRow.status == f.status)
        if f.model_version is not None:
            conditions.append(DetectionRow.model_version == f.model_version)
        if f.undecided_by is not None:
            mine = (
                select(Decision.id)
                .join(Analyst, Analyst.id == Decision.analyst_id)
                .where(
                    Decision.detection_id == DetectionRow.id, Decision.live, Analyst.name == f.undecided_by
                )
            )
            conditions.append(~mine.exists())
        order = [DetectionRow.score.desc(), DetectionRow.id]
        if f.order == "scene":
            order.insert(0, DetectionRow.scene)  # type: ignore[arg-type]
        with self._tx(write=False) as s:
            total = s.scalar(select(func.count(DetectionRow.id)).where(*conditions)) or 0
            rows = list(
                s.scalars(
                    select(DetectionRow).where(*conditions).order_by(*order).limit(f.limit).offset(f.offset)
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
            row = s.get(DetectionRow, detection_id)
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

    def progress(self) -> list[SceneProgress]:
        """Per scene: how many detections there are in each status, sorted by scene."""
        counts: dict[str, dict[str, int]] = {}
        with self._tx(write=False) as s:
            rows = s.execute(
                select(DetectionRow.scene, DetectionRow.status, func.count()).group_by(
                    DetectionRow.scene, DetectionRow.status
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

    def _by_status(self, status: str) -> Iterator[tuple[DetectionOut, DetectionRow]]:
        """Detections of one status in id order, a page per short read transaction."""
        after = 0
        while True:
            with self._tx(write=False) as s:
                rows = list(
                    s.scalars(
                        select(DetectionRow)
                        .where(DetectionRow.status == status, DetectionRow.id > after)
                        .order_by(DetectionRow.id)
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
